// ModelService: list, describe, load and roll back models.
#include "absl/strings/str_cat.h"

#include "server/services.h"

namespace unlearning::server {

grpc::Status ModelServiceImpl::ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                                          v1::ListModelsResponse* response) {
  auto models = models_->List();
  if (!models.ok()) return ToGrpc(models.status());
  for (auto& m : *models) *response->add_models() = std::move(m);
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::DescribeModel(grpc::ServerContext*,
                                             const v1::DescribeModelRequest* request,
                                             v1::ModelInfo* response) {
  if (request->model_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "model_id is required");
  }
  auto info = models_->Describe(request->model_id());
  if (!info.ok()) return ToGrpc(info.status());
  *response = *std::move(info);
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::LoadModel(grpc::ServerContext*, const v1::LoadModelRequest* request,
                                         v1::ModelInfo* response) {
  if (request->model_id().empty() || request->model_dir().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "model_id and model_dir are required");
  }
  if (auto status = models_->LoadNew(request->model_id(), request->model_dir()); !status.ok()) {
    return ToGrpc(status);
  }
  auto info = models_->Describe(request->model_id());
  if (!info.ok()) return ToGrpc(info.status());
  *response = *std::move(info);
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::RollbackModel(grpc::ServerContext*,
                                             const v1::RollbackModelRequest* request,
                                             v1::ModelInfo* response) {
  if (request->model_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "model_id is required");
  }
  auto info = models_->Rollback(request->model_id(), request->version());
  if (!info.ok()) return ToGrpc(info.status());
  *response = *std::move(info);
  return grpc::Status::OK;
}

}  // namespace unlearning::server
