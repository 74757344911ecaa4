// ErasureService on the gRPC callback API: transport only. It converts messages and calls the
// ErasureController; an open Erase stream holds no thread (its reactor is driven by gRPC's
// callbacks and by the event hub, which pushes the events of the jobs it follows).
#pragma once

#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include <grpcpp/grpcpp.h>

#include "server/auth.h"
#include "server/erasure_controller.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {

// The callback service with Erase on raw bytes: the stream parses each message itself, so that one
// message that proto3 would refuse (a string that is not UTF-8) is rejected alone instead of ending
// the stream (server/wire_parse.h).
using ErasureServiceBase = v1::ErasureService::WithRawCallbackMethod_Erase<
    v1::ErasureService::WithCallbackMethod_GetJob<v1::ErasureService::WithCallbackMethod_ListJobs<
        v1::ErasureService::WithCallbackMethod_CancelJob<
            v1::ErasureService::WithCallbackMethod_GetCertificate<
                v1::ErasureService::WithCallbackMethod_ListCertificates<
                    v1::ErasureService::WithCallbackMethod_GetSigningKey<
                        v1::ErasureService::Service>>>>>>>;

// Thread-safe. The unary calls run on gRPC's callback threads (journal reads; Erase's submits
// write the journal durably, a few milliseconds).
class ErasureServiceImpl final : public ErasureServiceBase {
 public:
  // `auth` may be null (no checks, no audit); borrowed. At most `max_streams` Erase streams are
  // open at once; one more ends at open with RESOURCE_EXHAUSTED.
  explicit ErasureServiceImpl(ErasureController* controller, Authorizer* auth = nullptr,
                              int max_streams = 1000)
      : controller_(controller), auth_(auth), max_streams_(max_streams) {}
  ~ErasureServiceImpl() override;

  // The bidirectional stream: each message submits a request or watches a job; events come back
  // in order per job, one write outstanding at a time. After the client half-closes, the stream
  // stays open until every job it follows has ended, then finishes OK.
  // Authorization (docs/security.md): at open, the token must be valid (else the stream ends
  // UNAUTHENTICATED) and have the erase or admin role (else PERMISSION_DENIED); then each message
  // is checked again against the current token table (a token revoked by a reload submits
  // nothing more) and against its model and, for a watch or a known request id, the job's owner:
  // a refused message gets its own REJECTED event (UNAUTHENTICATED / PERMISSION_DENIED) and the
  // stream stays open, like any other rejected request. Messages are v1::ErasureStreamRequest in,
  // v1::ErasureEvent out; a message whose strings are not all UTF-8, or that is not wire format,
  // gets its own REJECTED (INVALID_ARGUMENT naming the fields) and the stream stays open.
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Erase(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetCertificate(grpc::CallbackServerContext* ctx,
                                           const v1::GetCertificateRequest* request,
                                           v1::Certificate* response) override;
  grpc::ServerUnaryReactor* ListCertificates(grpc::CallbackServerContext* ctx,
                                             const v1::ListCertificatesRequest* request,
                                             v1::ListCertificatesResponse* response) override;
  grpc::ServerUnaryReactor* GetSigningKey(grpc::CallbackServerContext* ctx,
                                          const v1::GetSigningKeyRequest* request,
                                          v1::SigningKey* response) override;

  // Ends every open Erase stream (after the events already queued for it) with UNAVAILABLE
  // ("accepted jobs resume after restart") and ends new ones at once. Called by the server after
  // the scheduler has drained and before gRPC shuts down, so that shutdown never waits on an idle
  // stream.
  void Shutdown();
  // Erase streams open now.
  int open_streams() const;

 private:
  class EraseStream;

  void Release(EraseStream* stream);

  ErasureController* controller_;
  Authorizer* auth_;
  const int max_streams_;
  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Owns each open stream's reactor until gRPC calls its OnDone.
  std::map<EraseStream*, std::shared_ptr<EraseStream>> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace unlearning::server
