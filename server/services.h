// The gRPC services of unlearning.v1 (synchronous API). They translate protobuf <-> core at the
// edge and delegate to ModelManager, Journal, Scheduler and the core model families.
#pragma once

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/grpcpp.h>

#include "core/methods/method_registry.h"
#include "server/event_hub.h"
#include "server/infra/journal.h"
#include "server/infra/metrics.h"
#include "server/model_manager.h"
#include "server/proto_convert.h"
#include "server/scheduler.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {

grpc::Status ToGrpc(const absl::Status& status);

class ModelServiceImpl final : public v1::ModelService::Service {
 public:
  explicit ModelServiceImpl(ModelManager* models) : models_(models) {}
  grpc::Status ListModels(grpc::ServerContext* ctx, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status DescribeModel(grpc::ServerContext* ctx, const v1::DescribeModelRequest* request,
                             v1::ModelInfo* response) override;
  grpc::Status LoadModel(grpc::ServerContext* ctx, const v1::LoadModelRequest* request,
                         v1::ModelInfo* response) override;
  grpc::Status RollbackModel(grpc::ServerContext* ctx, const v1::RollbackModelRequest* request,
                             v1::ModelInfo* response) override;

 private:
  ModelManager* models_;
};

struct ErasureServiceDeps {
  Journal* journal = nullptr;
  ModelManager* models = nullptr;
  Scheduler* scheduler = nullptr;
  EventHub* events = nullptr;
  Metrics* metrics = nullptr;
  const core::MethodRegistry* methods = nullptr;
  RequestLimits limits;
};

class ErasureServiceImpl final : public v1::ErasureService::Service {
 public:
  explicit ErasureServiceImpl(ErasureServiceDeps deps) : deps_(std::move(deps)) {}

  grpc::Status Erase(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::ErasureEvent, v1::ErasureStreamRequest>* stream) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetCertificate(grpc::ServerContext* ctx, const v1::GetCertificateRequest* request,
                              v1::Certificate* response) override;

  // Validates, journals (durably) and queues one request. Returns the job and whether the request
  // id was already known. Errors are the rejection reason.
  absl::StatusOr<AcceptResult> Submit(const v1::ErasureRequest& request);
  // Cancels a job (idempotent for cancelled jobs).
  absl::StatusOr<JobRecord> Cancel(const std::string& job_id);

  // Called at startup: queue every unfinished job from the journal. Returns how many.
  absl::StatusOr<int> RecoverJobs();

 private:
  void UpdateQueueGauges(const std::string& model_id);

  ErasureServiceDeps deps_;
  absl::Mutex submit_mu_;  // capacity check + accept + enqueue are one step
};

class InferenceServiceImpl final : public v1::InferenceService::Service {
 public:
  InferenceServiceImpl(ModelManager* models, Metrics* metrics)
      : models_(models), metrics_(metrics) {}
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Score(grpc::ServerContext* ctx, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override;
  grpc::Status Classify(grpc::ServerContext* ctx, const v1::ClassifyRequest* request,
                        v1::ClassifyResponse* response) override;

  grpc::Status Sample(grpc::ServerContext* ctx, const v1::SampleRequest* request,
                      grpc::ServerWriter<v1::SampleResponse>* writer) override;

  // Images per Classify call.
  static constexpr int kMaxClassifyImages = 256;
  // Images per Sample call.
  static constexpr int kMaxSampleImages = 64;

 private:
  ModelManager* models_;
  Metrics* metrics_;
};

}  // namespace unlearning::server
