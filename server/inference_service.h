// InferenceService on the gRPC callback API: Generate and Sample (server-streamed), Score and
// Classify against a served model version. Transport only: it converts and calls the core
// capabilities (core/app/text_inference.h, core/app/image_inference.h).
//
// The computation runs on a small pool of inference workers owned by the service; a call waiting
// for a worker is a queued closure, not a blocked thread, and gRPC's callback threads never run a
// model. Streamed responses are queued on the call and written one at a time.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/grpcpp.h>

#include "core/common/cancellation.h"
#include "server/auth.h"
#include "server/infra/metrics.h"
#include "server/model_manager.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {

// Thread-safe.
class InferenceServiceImpl final : public v1::InferenceService::CallbackService {
 public:
  // `workers` calls compute at once (>= 1); the others wait in arrival order.
  // `auth` may be null (no checks, no audit); borrowed.
  InferenceServiceImpl(ModelManager* models, Metrics* metrics, int workers = kDefaultWorkers,
                       Authorizer* auth = nullptr);
  // Joins the workers. Destroy after gRPC has shut down (every call has ended).
  ~InferenceServiceImpl() override;

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* ctx, const v1::ScoreRequest* request,
                                  v1::ScoreResponse* response) override;
  grpc::ServerUnaryReactor* Classify(grpc::CallbackServerContext* ctx,
                                     const v1::ClassifyRequest* request,
                                     v1::ClassifyResponse* response) override;
  grpc::ServerWriteReactor<v1::SampleResponse>* Sample(grpc::CallbackServerContext* ctx,
                                                       const v1::SampleRequest* request) override;

  // Images per Classify call.
  static constexpr int kMaxClassifyImages = 256;
  // Images per Sample call.
  static constexpr int kMaxSampleImages = 64;
  // Inference calls computed at once by default: the 2 cores of the reference machine (each
  // call's LibTorch ops use the intra-op threads as configured).
  static constexpr int kDefaultWorkers = 2;

 private:
  // Sends one streamed response; false once the client has gone (stop computing).
  template <typename Response>
  using Emit = std::function<bool(Response)>;

  absl::Status DoGenerate(const v1::GenerateRequest& request,
                          const Emit<v1::GenerateResponse>& emit);
  absl::Status DoScore(const v1::ScoreRequest& request, v1::ScoreResponse* response);
  absl::Status DoClassify(const v1::ClassifyRequest& request, v1::ClassifyResponse* response);
  absl::Status DoSample(const v1::SampleRequest& request, const core::CancellationToken* cancel,
                        const Emit<v1::SampleResponse>& emit);

  // Queues `work` for the workers.
  void Post(std::function<void()> work);
  void WorkerLoop();

  ModelManager* models_;
  Metrics* metrics_;
  Authorizer* auth_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace unlearning::server
