// ModelService: list, describe, load and roll back models (callback API, unary reactors).
#include "server/model_service.h"

#include "absl/status/statusor.h"

#include "server/proto_convert.h"

namespace unlearning::server {
namespace {

// Finishes the call with `info` (moved into `response`) or its error.
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx,
                                absl::StatusOr<v1::ModelInfo> info, v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (info.ok()) *response = *std::move(info);
  reactor->Finish(ToGrpc(info.status()));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ModelServiceImpl::ListModels(grpc::CallbackServerContext* ctx,
                                                       const v1::ListModelsRequest*,
                                                       v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto models = models_->List();
  if (models.ok()) {
    for (auto& m : *models) *response->add_models() = std::move(m);
  }
  reactor->Finish(ToGrpc(models.status()));
  return reactor;
}

grpc::ServerUnaryReactor* ModelServiceImpl::DescribeModel(grpc::CallbackServerContext* ctx,
                                                          const v1::DescribeModelRequest* request,
                                                          v1::ModelInfo* response) {
  if (request->model_id().empty()) {
    return Reply(ctx, absl::InvalidArgumentError("model_id is required"), response);
  }
  return Reply(ctx, models_->Describe(request->model_id()), response);
}

grpc::ServerUnaryReactor* ModelServiceImpl::LoadModel(grpc::CallbackServerContext* ctx,
                                                      const v1::LoadModelRequest* request,
                                                      v1::ModelInfo* response) {
  if (request->model_id().empty() || request->model_dir().empty()) {
    return Reply(ctx, absl::InvalidArgumentError("model_id and model_dir are required"), response);
  }
  if (absl::Status status = models_->LoadNew(request->model_id(), request->model_dir());
      !status.ok()) {
    return Reply(ctx, status, response);
  }
  return Reply(ctx, models_->Describe(request->model_id()), response);
}

grpc::ServerUnaryReactor* ModelServiceImpl::RollbackModel(grpc::CallbackServerContext* ctx,
                                                          const v1::RollbackModelRequest* request,
                                                          v1::ModelInfo* response) {
  if (request->model_id().empty()) {
    return Reply(ctx, absl::InvalidArgumentError("model_id is required"), response);
  }
  return Reply(ctx, models_->Rollback(request->model_id(), request->version(), request->force()),
               response);
}

}  // namespace unlearning::server
