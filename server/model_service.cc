// ModelService: list, describe, load and roll back models (callback API, unary reactors).
#include "server/model_service.h"

#include "absl/status/statusor.h"

#include "server/proto_convert.h"

namespace unlearning::server {
namespace {

// Finishes the call with `info` (moved into `response`) or its error, and audits it.
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, AuthorizedCall& call,
                                absl::StatusOr<v1::ModelInfo> info, v1::ModelInfo* response) {
  if (info.ok()) *response = *std::move(info);
  return call.Finish(ctx->DefaultReactor(), ToGrpc(info.status()));
}

}  // namespace

grpc::ServerUnaryReactor* ModelServiceImpl::ListModels(grpc::CallbackServerContext* ctx,
                                                       const v1::ListModelsRequest*,
                                                       v1::ListModelsResponse* response) {
  AuthorizedCall call(auth_, *ctx, "ModelService/ListModels");
  if (grpc::Status denied = call.Check(kAnyRole); !denied.ok()) {
    return call.Finish(ctx->DefaultReactor(), denied);
  }
  auto models = models_->List();
  if (models.ok()) {
    // A token restricted to some models sees only those.
    for (auto& m : *models) {
      if (call.caller().MayUse(m.model_id())) *response->add_models() = std::move(m);
    }
  }
  return call.Finish(ctx->DefaultReactor(), ToGrpc(models.status()));
}

grpc::ServerUnaryReactor* ModelServiceImpl::DescribeModel(grpc::CallbackServerContext* ctx,
                                                          const v1::DescribeModelRequest* request,
                                                          v1::ModelInfo* response) {
  AuthorizedCall call(auth_, *ctx, "ModelService/DescribeModel");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kAnyRole, request->model_id()); !denied.ok()) {
    return call.Finish(ctx->DefaultReactor(), denied);
  }
  if (request->model_id().empty()) {
    return Reply(ctx, call, absl::InvalidArgumentError("model_id is required"), response);
  }
  return Reply(ctx, call, models_->Describe(request->model_id()), response);
}

grpc::ServerUnaryReactor* ModelServiceImpl::LoadModel(grpc::CallbackServerContext* ctx,
                                                      const v1::LoadModelRequest* request,
                                                      v1::ModelInfo* response) {
  AuthorizedCall call(auth_, *ctx, "ModelService/LoadModel");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kRoleAdmin, request->model_id()); !denied.ok()) {
    return call.Finish(ctx->DefaultReactor(), denied);
  }
  if (request->model_id().empty() || request->model_dir().empty()) {
    return Reply(ctx, call, absl::InvalidArgumentError("model_id and model_dir are required"),
                 response);
  }
  if (absl::Status status = models_->LoadNew(request->model_id(), request->model_dir());
      !status.ok()) {
    return Reply(ctx, call, status, response);
  }
  return Reply(ctx, call, models_->Describe(request->model_id()), response);
}

grpc::ServerUnaryReactor* ModelServiceImpl::RollbackModel(grpc::CallbackServerContext* ctx,
                                                          const v1::RollbackModelRequest* request,
                                                          v1::ModelInfo* response) {
  AuthorizedCall call(
      auth_, *ctx,
      request->force() ? "ModelService/RollbackModel(force)" : "ModelService/RollbackModel");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kRoleAdmin, request->model_id()); !denied.ok()) {
    return call.Finish(ctx->DefaultReactor(), denied);
  }
  if (request->model_id().empty()) {
    return Reply(ctx, call, absl::InvalidArgumentError("model_id is required"), response);
  }
  return Reply(ctx, call,
               models_->Rollback(request->model_id(), request->version(), request->force()),
               response);
}

}  // namespace unlearning::server
