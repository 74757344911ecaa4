#include "server/model_manager.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

#include "core/common/status_macros.h"
#include "core/data/text_example.h"
#include "server/proto_convert.h"

namespace unlearning::server {
namespace fs = std::filesystem;

namespace {

std::string FamilyKey(core::ModelFamily family) { return core::ModelFamilyName(family); }

// Probe sets shipped with a model directory (optional): <dir>/probes/{retain,holdout}.jsonl.
std::vector<core::TextExample> ReadProbes(const std::string& dir, const char* name) {
  const fs::path path = fs::path(dir) / "probes" / (std::string(name) + ".jsonl");
  std::error_code ec;
  if (!fs::exists(path, ec)) return {};
  auto examples = core::ReadJsonl(path.string());
  if (!examples.ok()) return {};
  return *std::move(examples);
}

}  // namespace

ModelManager::ModelManager(Journal* journal, ModelStore* store, ModelRegistry* registry,
                           Metrics* metrics, torch::Device device)
    : journal_(journal), store_(store), registry_(registry), metrics_(metrics), device_(device) {}

absl::StatusOr<std::shared_ptr<const ServedModelInfo>> ModelManager::MakeInfo(
    const ModelRecord& record, const core::Model& model) {
  auto info = std::make_shared<ServedModelInfo>();
  info->model_id = record.model_id;
  info->family = model.family();
  info->architecture = model.architecture();
  info->source_dir = record.source_dir;
  info->num_parameters = model.num_parameters();
  info->retain_probes = ReadProbes(record.source_dir, "retain");
  info->holdout_probes = ReadProbes(record.source_dir, "holdout");
  return info;
}

absl::Status ModelManager::LoadNew(const std::string& model_id, const std::string& dir) {
  UNL_RETURN_IF_ERROR(ValidateModelId(model_id));
  absl::MutexLock lock(&mutate_mu_);
  if (registry_->Contains(model_id) || journal_->GetModel(model_id).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("model id '", model_id, "' is already in use"));
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("model directory '", dir, "' does not exist"));
  }
  const std::string abs_dir = fs::absolute(dir).lexically_normal().string();
  // Load from the user's directory first: a directory that does not load is rejected before
  // anything is written.
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<core::Model> model, core::LoadModel(abs_dir, device_));
  UNL_ASSIGN_OR_RETURN(std::string version_dir, store_->Import(model_id, 1, abs_dir));
  UNL_ASSIGN_OR_RETURN(std::string sha, WeightsSha256(version_dir));

  ModelRecord record;
  record.model_id = model_id;
  record.family = FamilyKey(model->family());
  record.architecture = model->architecture();
  record.source_dir = abs_dir;
  UNL_RETURN_IF_ERROR(journal_->RegisterModel(record));
  ModelVersionRecord version;
  version.model_id = model_id;
  version.version = 1;
  version.artifact_kind = "full";
  version.dir = version_dir;
  version.weights_sha256 = sha;
  UNL_RETURN_IF_ERROR(journal_->AddVersion(version, /*make_current=*/true));

  UNL_ASSIGN_OR_RETURN(auto info, MakeInfo(record, *model));
  auto served = std::make_shared<ServedVersion>();
  served->version = 1;
  served->dir = version_dir;
  served->weights_sha256 = sha;
  served->model = std::move(model);
  UNL_RETURN_IF_ERROR(registry_->Add(std::move(info), std::move(served)));
  metrics_->SetModelVersion(model_id, 1, /*published=*/false);
  return absl::OkStatus();
}

absl::Status ModelManager::RestoreAll() {
  absl::MutexLock lock(&mutate_mu_);
  UNL_ASSIGN_OR_RETURN(std::vector<ModelRecord> models, journal_->ListModels());
  for (const ModelRecord& record : models) {
    if (registry_->Contains(record.model_id) || record.current_version == 0) continue;
    UNL_ASSIGN_OR_RETURN(ModelVersionRecord version,
                         journal_->GetVersion(record.model_id, record.current_version));
    auto model = core::LoadModel(version.dir, device_);
    if (!model.ok()) {
      return absl::Status(
          model.status().code(),
          absl::StrCat("restoring model '", record.model_id, "' version ", version.version,
                       " from ", version.dir, ": ", model.status().message()));
    }
    UNL_ASSIGN_OR_RETURN(auto info, MakeInfo(record, **model));
    auto served = std::make_shared<ServedVersion>();
    served->version = version.version;
    served->dir = version.dir;
    served->weights_sha256 = version.weights_sha256;
    served->model = *std::move(model);
    UNL_RETURN_IF_ERROR(registry_->Add(std::move(info), std::move(served)));
    metrics_->SetModelVersion(record.model_id, version.version, /*published=*/false);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ServedVersion>> ModelManager::Resolve(
    const std::string& model_id, int64_t version) {
  UNL_ASSIGN_OR_RETURN(auto serving, registry_->Serving(model_id));
  if (version == 0 || version == serving->version) return serving;
  if (version < 0) {
    return absl::InvalidArgumentError(absl::StrCat("version must be >= 0, got ", version));
  }
  if (auto resident = registry_->Resident(model_id, version)) return resident;
  auto record = journal_->GetVersion(model_id, version);
  if (!record.ok()) {
    return absl::NotFoundError(absl::StrCat("model '", model_id, "' has no version ", version,
                                            " (serving version is ", serving->version, ")"));
  }
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<core::Model> model, core::LoadModel(record->dir, device_));
  auto served = std::make_shared<ServedVersion>();
  served->version = record->version;
  served->dir = record->dir;
  served->weights_sha256 = record->weights_sha256;
  served->model = std::move(model);
  registry_->CacheResident(model_id, served);
  return std::shared_ptr<const ServedVersion>(served);
}

absl::StatusOr<v1::ModelInfo> ModelManager::Rollback(const std::string& model_id, int64_t version) {
  {
    absl::MutexLock lock(&mutate_mu_);
    UNL_ASSIGN_OR_RETURN(ModelRecord model, journal_->GetModel(model_id));
    if (version <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("version must be >= 1, got ", version));
    }
    auto target = journal_->GetVersion(model_id, version);
    if (!target.ok()) {
      return absl::NotFoundError(absl::StrCat("model '", model_id, "' has no version ", version));
    }
    if (version == model.current_version) {
      return absl::FailedPreconditionError(
          absl::StrCat("version ", version, " of model '", model_id, "' is already serving"));
    }
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<core::Model> loaded,
                         core::LoadModel(target->dir, device_));
    UNL_ASSIGN_OR_RETURN(int64_t next, journal_->NextVersion(model_id));
    ModelVersionRecord record;
    record.model_id = model_id;
    record.version = next;
    record.parent_version = model.current_version;
    record.artifact_kind = target->artifact_kind;
    record.dir = target->dir;  // versions are immutable: the rollback shares the bytes
    record.weights_sha256 = target->weights_sha256;
    record.figures_json = absl::StrCat("{\"rollback_to\":", version, "}");
    UNL_RETURN_IF_ERROR(journal_->AddVersion(record, /*make_current=*/true));
    auto served = std::make_shared<ServedVersion>();
    served->version = next;
    served->dir = record.dir;
    served->weights_sha256 = record.weights_sha256;
    served->model = std::move(loaded);
    UNL_RETURN_IF_ERROR(registry_->Publish(model_id, std::move(served)));
    metrics_->SetModelVersion(model_id, next, /*published=*/false);
  }
  return Describe(model_id);
}

absl::Status ModelManager::PublishResident(const std::string& model_id,
                                           std::shared_ptr<const ServedVersion> version) {
  absl::MutexLock lock(&mutate_mu_);
  const int64_t number = version->version;
  UNL_RETURN_IF_ERROR(registry_->Publish(model_id, std::move(version)));
  metrics_->SetModelVersion(model_id, number, /*published=*/true);
  return absl::OkStatus();
}

absl::StatusOr<v1::ModelInfo> ModelManager::Describe(const std::string& model_id) {
  UNL_ASSIGN_OR_RETURN(auto info, registry_->Info(model_id));
  UNL_ASSIGN_OR_RETURN(ModelRecord record, journal_->GetModel(model_id));
  UNL_ASSIGN_OR_RETURN(std::vector<ModelVersionRecord> versions, journal_->ListVersions(model_id));
  v1::ModelInfo out;
  out.set_model_id(model_id);
  out.set_family(ToProto(info->family));
  out.set_architecture(info->architecture);
  out.set_num_parameters(info->num_parameters);
  out.set_serving_version(record.current_version);
  out.set_source_dir(record.source_dir);
  out.set_device(device_.str());
  for (const auto& v : versions) {
    v1::ModelVersion* pv = out.add_versions();
    pv->set_version(v.version);
    pv->set_parent_version(v.parent_version);
    pv->set_job_id(v.job_id);
    pv->set_artifact_kind(v.artifact_kind == "lora"        ? v1::ARTIFACT_KIND_LORA_ADAPTER
                          : v.artifact_kind == "assistant" ? v1::ARTIFACT_KIND_ASSISTANT
                          : v.artifact_kind == "generator" ? v1::ARTIFACT_KIND_ONE_STEP_GENERATOR
                                                           : v1::ARTIFACT_KIND_FULL_WEIGHTS);
    pv->set_weights_sha256(v.weights_sha256);
    pv->set_created_unix_ms(v.created_unix_ms);
    pv->set_serving(v.version == record.current_version);
    if (!v.job_id.empty()) {
      pv->set_note("erasure");
    } else if (v.parent_version == 0) {
      pv->set_note("loaded");
    } else {
      auto parsed = nlohmann::json::parse(v.figures_json, nullptr, false);
      pv->set_note(parsed.is_object() && parsed.contains("rollback_to")
                       ? absl::StrCat("rollback to ", parsed["rollback_to"].get<int64_t>())
                       : "rollback");
    }
  }
  return out;
}

absl::StatusOr<std::vector<v1::ModelInfo>> ModelManager::List() {
  std::vector<v1::ModelInfo> out;
  for (const std::string& id : registry_->ModelIds()) {
    UNL_ASSIGN_OR_RETURN(v1::ModelInfo info, Describe(id));
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace unlearning::server
