#include "server/model_manager.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "server/infra/manifest.h"
#include "server/proto_convert.h"

namespace unlearning::server {
namespace fs = std::filesystem;

namespace {

// Longest chain a version may resolve through (adapters on adapters on ... a base).
constexpr int kMaxChainDepth = 64;

}  // namespace

ModelManager::ModelManager(Journal* journal, ModelStore* store, ModelRegistry* registry,
                           Metrics* metrics, const core::FamilyRegistry* families,
                           torch::Device device)
    : journal_(journal),
      store_(store),
      registry_(registry),
      metrics_(metrics),
      families_(families),
      device_(device) {}

absl::StatusOr<std::shared_ptr<const ServedModelInfo>> ModelManager::MakeInfo(
    const ModelRecord& record, const core::Model& model) {
  auto info = std::make_shared<ServedModelInfo>();
  info->model_id = record.model_id;
  info->family = model.family();
  info->architecture = model.architecture();
  info->source_dir = record.source_dir;
  info->num_parameters = model.num_parameters();
  UNL_ASSIGN_OR_RETURN(info->family_spec, families_->Find(model.family()));
  if (info->family_spec->load_probes) {
    absl::StatusOr<core::ModelProbes> probes = info->family_spec->load_probes(record.source_dir);
    if (!probes.ok()) {
      return absl::Status(probes.status().code(), absl::StrCat("model '", record.model_id,
                                                               "': ", probes.status().message()));
    }
    info->probes = *std::move(probes);
  }
  return info;
}

absl::StatusOr<std::vector<ChainEntry>> ModelManager::ResolveChain(const std::string& model_id,
                                                                   int64_t version) {
  std::vector<ChainEntry> chain;
  int64_t next = version;
  while (next > 0) {
    if (static_cast<int>(chain.size()) >= kMaxChainDepth) {
      return absl::DataLossError(absl::StrCat("model '", model_id, "' version ", version,
                                              ": chain longer than ", kMaxChainDepth));
    }
    UNL_ASSIGN_OR_RETURN(ModelVersionRecord record, journal_->GetVersion(model_id, next));
    UNL_ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(record.dir, /*verify=*/false));
    UNL_ASSIGN_OR_RETURN(core::ArtifactKind kind, core::ParseArtifactKind(manifest.kind));
    chain.push_back({record.version, kind, record.manifest_sha256});
    next = core::NeedsParent(kind) ? manifest.parent_version : 0;
  }
  return chain;
}

absl::StatusOr<std::shared_ptr<ServedVersion>> ModelManager::LoadVersion(
    const std::string& model_id, const ModelVersionRecord& record, int depth) {
  if (depth > kMaxChainDepth) {
    return absl::DataLossError(absl::StrCat("model '", model_id, "' version ", record.version,
                                            ": chain longer than ", kMaxChainDepth));
  }
  auto context = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("model '", model_id, "' version ", record.version,
                                               " (", record.dir, "): ", s.message()));
  };
  absl::StatusOr<Manifest> manifest = ReadManifest(record.dir, /*verify=*/true);
  if (!manifest.ok()) return context(manifest.status());
  absl::StatusOr<core::ArtifactKind> kind = core::ParseArtifactKind(manifest->kind);
  if (!kind.ok()) return context(kind.status());
  UNL_ASSIGN_OR_RETURN(std::string sha, ManifestSha256(record.dir));
  if (!record.manifest_sha256.empty() && sha != record.manifest_sha256) {
    return context(absl::DataLossError("manifest.json does not match the journal's SHA-256"));
  }

  auto served = std::make_shared<ServedVersion>();
  served->version = record.version;
  served->dir = record.dir;
  served->manifest_sha256 = sha;
  served->kind = *kind;
  served->chain.push_back({record.version, *kind, sha});
  absl::StatusOr<std::unique_ptr<core::Model>> model;
  if (core::NeedsParent(*kind)) {
    std::shared_ptr<const ServedVersion> parent =
        registry_->Resident(model_id, manifest->parent_version);
    if (parent == nullptr) {
      UNL_ASSIGN_OR_RETURN(ModelVersionRecord parent_record,
                           journal_->GetVersion(model_id, manifest->parent_version));
      UNL_ASSIGN_OR_RETURN(parent, LoadVersion(model_id, parent_record, depth + 1));
    }
    served->chain.insert(served->chain.end(), parent->chain.begin(), parent->chain.end());
    UNL_ASSIGN_OR_RETURN(const core::FamilySpec* family, families_->Find(parent->model->family()));
    if (!family->load_on_parent) {
      return context(absl::UnimplementedError(
          absl::StrCat(core::ModelFamilyName(family->family), " models have no ",
                       core::ArtifactKindName(*kind), " artifacts in this server version")));
    }
    model = family->load_on_parent(*kind, record.dir, parent->model, device_);
  } else {
    model = families_->Load(record.dir, device_);
  }
  if (!model.ok()) return context(model.status());
  served->model = *std::move(model);
  return served;
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
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<core::Model> model, families_->Load(abs_dir, device_));
  UNL_ASSIGN_OR_RETURN(
      std::string version_dir,
      store_->Import(model_id, 1, abs_dir, core::ModelFamilyName(model->family())));
  UNL_ASSIGN_OR_RETURN(std::string sha, ManifestSha256(version_dir));

  ModelRecord record;
  record.model_id = model_id;
  record.family = core::ModelFamilyName(model->family());
  record.architecture = model->architecture();
  record.source_dir = abs_dir;
  UNL_ASSIGN_OR_RETURN(auto info, MakeInfo(record, *model));
  UNL_RETURN_IF_ERROR(journal_->RegisterModel(record));
  ModelVersionRecord version;
  version.model_id = model_id;
  version.version = 1;
  version.artifact_kind = core::ArtifactKindName(core::ArtifactKind::kFullWeights);
  version.dir = version_dir;
  version.manifest_sha256 = sha;
  UNL_RETURN_IF_ERROR(journal_->AddVersion(version, /*make_current=*/true));

  auto served = std::make_shared<ServedVersion>();
  served->version = 1;
  served->dir = version_dir;
  served->manifest_sha256 = sha;
  served->chain.push_back({1, core::ArtifactKind::kFullWeights, sha});
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
    absl::StatusOr<std::shared_ptr<ServedVersion>> served = LoadVersion(record.model_id, version);
    if (!served.ok()) {
      return absl::Status(served.status().code(),
                          absl::StrCat("restoring: ", served.status().message()));
    }
    UNL_ASSIGN_OR_RETURN(auto info, MakeInfo(record, *(*served)->model));
    UNL_RETURN_IF_ERROR(registry_->Add(std::move(info), *std::move(served)));
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
  UNL_ASSIGN_OR_RETURN(std::shared_ptr<ServedVersion> served, LoadVersion(model_id, *record));
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
    UNL_ASSIGN_OR_RETURN(std::shared_ptr<ServedVersion> loaded, LoadVersion(model_id, *target));
    UNL_ASSIGN_OR_RETURN(int64_t next, journal_->NextVersion(model_id));
    ModelVersionRecord record;
    record.model_id = model_id;
    record.version = next;
    record.parent_version = model.current_version;
    record.artifact_kind = target->artifact_kind;
    record.dir = target->dir;  // versions are immutable: the rollback shares the bytes
    record.manifest_sha256 = target->manifest_sha256;
    record.figures_json = absl::StrCat("{\"rollback_to\":", version, "}");
    UNL_RETURN_IF_ERROR(journal_->AddVersion(record, /*make_current=*/true));
    loaded->version = next;
    loaded->chain.front().version = next;
    UNL_RETURN_IF_ERROR(registry_->Publish(model_id, std::move(loaded)));
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
    absl::StatusOr<core::ArtifactKind> kind = core::ParseArtifactKind(v.artifact_kind);
    pv->set_artifact_kind(kind.ok() ? ToProto(*kind) : v1::ARTIFACT_KIND_UNSPECIFIED);
    pv->set_manifest_sha256(v.manifest_sha256);
    absl::StatusOr<std::vector<ChainEntry>> chain = ResolveChain(model_id, v.version);
    if (chain.ok()) {
      for (const ChainEntry& link : *chain) pv->add_chain(link.version);
      // A rollback shares its target's files: its chain starts with itself.
      if (!chain->empty()) pv->set_chain(0, v.version);
    }
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
