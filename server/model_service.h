// ModelService on the gRPC callback API: list, describe, load and roll back models. Transport
// only: it converts and calls the ModelManager.
#pragma once

#include <grpcpp/grpcpp.h>

#include "server/auth.h"
#include "server/model_manager.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {

// Thread-safe. Each call runs on a gRPC callback thread; LoadModel and RollbackModel read a model
// from disk there (seconds for a large model), the other calls are in-memory or journal reads.
class ModelServiceImpl final : public v1::ModelService::CallbackService {
 public:
  // `auth` may be null (no checks, no audit); borrowed.
  explicit ModelServiceImpl(ModelManager* models, Authorizer* auth = nullptr)
      : models_(models), auth_(auth) {}
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* DescribeModel(grpc::CallbackServerContext* ctx,
                                          const v1::DescribeModelRequest* request,
                                          v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* ctx,
                                      const v1::LoadModelRequest* request,
                                      v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* RollbackModel(grpc::CallbackServerContext* ctx,
                                          const v1::RollbackModelRequest* request,
                                          v1::ModelInfo* response) override;

 private:
  ModelManager* models_;
  Authorizer* auth_;
};

}  // namespace unlearning::server
