#include "server/model_manager.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include <google/protobuf/util/json_util.h>

#include "core/common/sha256.h"
#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "server/certificates.h"
#include "server/infra/manifest.h"
#include "server/proto_convert.h"
#include "unlearning/v1/erasure.pb.h"

namespace unlearning::server {
namespace fs = std::filesystem;

namespace {

// Longest chain a version may resolve through (adapters on adapters on ... a base).
constexpr int kMaxChainDepth = 64;

std::string UtcTime(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

// Why a purged version cannot be used.
std::string PurgedMessage(const std::string& model_id, const ModelVersionRecord& v) {
  return absl::StrCat("version ", v.version, " of model '", model_id, "' was purged at ",
                      UtcTime(v.purged_unix_ms), " because it precedes the completed erasure job ",
                      v.purged_by_job,
                      " (it still held the erased data): its files are deleted and it cannot be "
                      "served again");
}

// The completed erasures a model at `version` would not reflect: those that published a later
// version (or found the data already absent from one), oldest first.
std::vector<JobRecord> ErasuresAfter(const std::vector<JobRecord>& completed, int64_t version) {
  std::vector<JobRecord> out;
  for (const JobRecord& j : completed) {
    if (j.published_version > version) out.push_back(j);
  }
  return out;
}

std::string DescribeErasures(const std::vector<JobRecord>& jobs) {
  std::vector<std::string> parts;
  for (const JobRecord& j : jobs) {
    parts.push_back(
        absl::StrCat(j.job_id, " (request ", j.request_id, ", version ", j.published_version, ")"));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

ModelManager::ModelManager(Journal* journal, ModelStore* store, ModelRegistry* registry,
                           Metrics* metrics, const core::FamilyRegistry* families,
                           torch::Device device, int64_t purge_grace_seconds,
                           const core::certs::SigningKey* signing_key)
    : journal_(journal),
      store_(store),
      registry_(registry),
      metrics_(metrics),
      families_(families),
      device_(device),
      purge_grace_seconds_(purge_grace_seconds),
      signing_key_(signing_key) {}

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
    UNL_ASSIGN_OR_RETURN(ModelVersionRecord parent_record,
                         journal_->GetVersion(model_id, manifest->parent_version));
    std::shared_ptr<const ServedVersion> parent =
        registry_->Resident(model_id, parent_record.version, parent_record.manifest_sha256);
    if (parent == nullptr) {
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

absl::StatusOr<int> ModelManager::RemoveUncommittedLocked(const std::string& model_id) {
  UNL_ASSIGN_OR_RETURN(int64_t next, journal_->NextVersion(model_id));
  UNL_ASSIGN_OR_RETURN(std::vector<int64_t> on_disk, store_->ListVersionsOnDisk(model_id));
  int removed = 0;
  for (int64_t version : on_disk) {
    if (version < next) continue;  // a journaled number: retention owns it
    const std::string dir = store_->VersionDir(model_id, version);
    UNL_RETURN_IF_ERROR(store_->PurgeVersionDir(dir).status());
    std::cerr << "unlearnd: model '" << model_id << "': removed " << dir
              << " (stored by a publish that a crash interrupted before the journal recorded it)"
              << std::endl;
    ++removed;
  }
  return removed;
}

absl::Status ModelManager::RestoreAll() {
  absl::MutexLock lock(&mutate_mu_);
  UNL_ASSIGN_OR_RETURN(std::vector<ModelRecord> models, journal_->ListModels());
  for (const ModelRecord& record : models) {
    UNL_RETURN_IF_ERROR(RemoveUncommittedLocked(record.model_id).status());
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
  // The journal is the record of which versions exist, which are purged and what each one's
  // content is; the resident set is looked up by that content hash, so a cached copy never
  // outlives its purge or answers for other bytes.
  auto record = journal_->GetVersion(model_id, version);
  if (!record.ok()) {
    return absl::NotFoundError(absl::StrCat("model '", model_id, "' has no version ", version,
                                            " (serving version is ", serving->version, ")"));
  }
  if (record->purged_unix_ms > 0) {
    return absl::NotFoundError(absl::StrCat(PurgedMessage(model_id, *record),
                                            "; query the serving version ", serving->version,
                                            " instead"));
  }
  if (auto resident = registry_->Resident(model_id, version, record->manifest_sha256)) {
    return resident;
  }
  UNL_ASSIGN_OR_RETURN(std::shared_ptr<ServedVersion> served, LoadVersion(model_id, *record));
  registry_->CacheResident(model_id, served);
  return std::shared_ptr<const ServedVersion>(served);
}

absl::StatusOr<v1::ModelInfo> ModelManager::Rollback(const std::string& model_id, int64_t version,
                                                     bool force) {
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
    if (target->purged_unix_ms > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot roll back: ", PurgedMessage(model_id, *target),
                       "; roll back to a version that is not purged (models describe ", model_id,
                       " lists them)"));
    }
    if (version == model.current_version) {
      return absl::FailedPreconditionError(
          absl::StrCat("version ", version, " of model '", model_id, "' is already serving"));
    }
    UNL_ASSIGN_OR_RETURN(std::vector<JobRecord> completed, journal_->CompletedJobs(model_id));
    const std::vector<JobRecord> undone = ErasuresAfter(completed, version);
    if (!undone.empty() && !force) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rolling model '", model_id, "' back to version ", version,
          " would undo the completed erasure", undone.size() > 1 ? "s " : " ",
          DescribeErasures(undone), ": version ", version,
          " still holds the erased data. Roll back to a later version, or set force "
          "(unlearnctl models rollback --force) to undo the erasure; a forced rollback is "
          "recorded in the model's certificate chain"));
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
    nlohmann::json facts = {{"rollback_to", version}};
    loaded->version = next;
    loaded->chain.front().version = next;
    if (undone.empty()) {
      record.figures_json = facts.dump();
      UNL_RETURN_IF_ERROR(journal_->AddVersion(record, /*make_current=*/true));
    } else {
      // A forced rollback across erasures: one record in the model's certificate chain, in the
      // same transaction as the version, naming what it undoes.
      UNL_ASSIGN_OR_RETURN(ModelVersionRecord current,
                           journal_->GetVersion(model_id, model.current_version));
      UNL_ASSIGN_OR_RETURN(std::string previous_sha, journal_->LatestCertificateSha(model_id));
      nlohmann::json undoes = nlohmann::json::array();
      std::vector<std::string> job_ids;
      std::vector<std::string> request_ids;
      for (const JobRecord& j : undone) {
        undoes.push_back({{"job_id", j.job_id},
                          {"request_id", j.request_id},
                          {"compliance_reference", j.compliance_reference},
                          {"published_version", j.published_version}});
        job_ids.push_back(j.job_id);
        request_ids.push_back(j.request_id);
      }
      v1::Certificate cert;
      cert.set_certificate_id(absl::StrCat("rollback-", model_id, "-v", next));
      cert.set_request_id(absl::StrJoin(request_ids, ","));
      cert.set_model_id(model_id);
      cert.set_version_before(model.current_version);
      cert.set_version_after(next);
      cert.set_method(kCertificateKindForcedRollback);
      cert.set_method_params_json(
          nlohmann::json({{"rollback_to", version}, {"undoes", undoes}}).dump());
      cert.set_manifest_before_sha256(current.manifest_sha256);
      cert.set_manifest_after_sha256(target->manifest_sha256);
      cert.set_completed_unix_ms(NowUnixMs());
      cert.set_previous_certificate_sha256(previous_sha);
      cert.set_artifact_kind(ToProto(loaded->kind));
      for (const ChainEntry& link : loaded->chain) {
        v1::ChainLink* l = cert.add_chain();
        l->set_version(link.version);
        l->set_artifact_kind(ToProto(link.kind));
        l->set_manifest_sha256(link.manifest_sha256);
      }
      if (signing_key_ == nullptr) {
        return absl::FailedPreconditionError("no certificate signing key to record the rollback");
      }
      UNL_ASSIGN_OR_RETURN(CertificateRecord certificate, SealCertificate(cert, *signing_key_));
      certificate.kind = kCertificateKindForcedRollback;
      facts["forced"] = true;
      facts["undoes_jobs"] = job_ids;
      facts["undoes_requests"] = request_ids;
      facts["certificate_id"] = certificate.certificate_id;
      record.figures_json = facts.dump();
      UNL_RETURN_IF_ERROR(journal_->RecordForcedRollback(record, certificate));
      std::cerr << "unlearnd: forced rollback of model '" << model_id << "' to version " << version
                << " (now version " << next << ") undoes the erasure"
                << (undone.size() > 1 ? "s " : " ") << DescribeErasures(undone) << "; recorded as "
                << certificate.certificate_id << std::endl;
    }
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
  absl::StatusOr<int> purged = ApplyRetentionLocked(model_id);
  if (!purged.ok()) {
    std::cerr << "unlearnd: retention: model '" << model_id
              << "': purging versions older than version " << number
              << " failed (retried at the next sweep): " << purged.status().message() << std::endl;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ModelManager::ApplyRetention(const std::string& model_id) {
  absl::MutexLock lock(&mutate_mu_);
  if (!model_id.empty()) return ApplyRetentionLocked(model_id);
  UNL_ASSIGN_OR_RETURN(std::vector<ModelRecord> models, journal_->ListModels());
  int total = 0;
  absl::Status first_error;
  for (const ModelRecord& m : models) {
    absl::StatusOr<int> n = ApplyRetentionLocked(m.model_id);
    if (n.ok()) {
      total += *n;
    } else if (first_error.ok()) {
      first_error = n.status();
    }
  }
  if (!first_error.ok()) return first_error;
  return total;
}

absl::StatusOr<int> ModelManager::ApplyRetentionLocked(const std::string& model_id) {
  if (purge_grace_seconds_ < 0) return 0;  // keep every version forever
  UNL_ASSIGN_OR_RETURN(ModelRecord model, journal_->GetModel(model_id));
  UNL_ASSIGN_OR_RETURN(std::vector<ModelVersionRecord> versions, journal_->ListVersions(model_id));
  UNL_ASSIGN_OR_RETURN(std::vector<JobRecord> completed, journal_->CompletedJobs(model_id));
  const int64_t now = NowUnixMs();
  const int64_t grace_ms = purge_grace_seconds_ * 1000;

  // Due: older than a completed erasure whose grace period has passed (by the first such erasure).
  std::map<int64_t, std::string> due;  // version -> erasure job
  std::vector<const ModelVersionRecord*> kept;
  for (const ModelVersionRecord& v : versions) {
    if (v.purged_unix_ms > 0) continue;
    const JobRecord* by = nullptr;
    for (const JobRecord& j : completed) {
      if (j.published_version > v.version && j.finished_unix_ms + grace_ms <= now) {
        by = &j;
        break;
      }
    }
    if (by != nullptr && v.version != model.current_version) {
      due[v.version] = by->job_id;
    } else {
      kept.push_back(&v);
    }
  }
  // What the kept versions need: the versions they load through and the directories they read.
  std::set<int64_t> needed;
  std::set<std::string> needed_dirs;
  for (const ModelVersionRecord* v : kept) {
    needed_dirs.insert(v->dir);
    absl::StatusOr<std::vector<ChainEntry>> chain = ResolveChain(model_id, v->version);
    if (!chain.ok()) {
      return absl::Status(chain.status().code(),
                          absl::StrCat("version ", v->version, ": ", chain.status().message()));
    }
    for (const ChainEntry& link : *chain) {
      needed.insert(link.version);
      for (const ModelVersionRecord& w : versions) {
        if (w.version == link.version) needed_dirs.insert(w.dir);
      }
    }
  }
  int purged = 0;
  for (const ModelVersionRecord& v : versions) {
    if (v.purged_unix_ms == 0) {
      auto it = due.find(v.version);
      if (it == due.end() || needed.count(v.version) > 0) continue;
      // The journal first (the version is unusable from now on), then the bytes.
      UNL_RETURN_IF_ERROR(journal_->MarkVersionPurged(model_id, v.version, it->second));
      registry_->Evict(model_id, v.version);
      ++purged;
      std::cerr << "unlearnd: retention: model '" << model_id << "' version " << v.version
                << " purged (precedes the completed erasure job " << it->second << ")" << std::endl;
    }
    // Also finishes a purge that a crash interrupted between the journal and the store.
    if (needed_dirs.count(v.dir) == 0) {
      UNL_RETURN_IF_ERROR(store_->PurgeVersionDir(v.dir).status());
    }
  }
  return purged;
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
    pv->set_purged(v.purged_unix_ms > 0);
    pv->set_purged_unix_ms(v.purged_unix_ms);
    pv->set_purged_by_job_id(v.purged_by_job);
    if (!v.job_id.empty()) {
      pv->set_note("erasure");
    } else if (v.parent_version == 0) {
      pv->set_note("loaded");
    } else {
      auto parsed = nlohmann::json::parse(v.figures_json, nullptr, false);
      const bool forced = parsed.is_object() && parsed.value("forced", false);
      pv->set_note(parsed.is_object() && parsed.contains("rollback_to")
                       ? absl::StrCat(forced ? "forced rollback to " : "rollback to ",
                                      parsed["rollback_to"].get<int64_t>())
                       : "rollback");
      if (forced) {
        for (const auto& id : parsed.value("undoes_jobs", nlohmann::json::array())) {
          if (id.is_string()) pv->add_undoes_job_ids(id.get<std::string>());
        }
        for (const auto& id : parsed.value("undoes_requests", nlohmann::json::array())) {
          if (id.is_string()) pv->add_undoes_request_ids(id.get<std::string>());
        }
        pv->set_certificate_id(parsed.value("certificate_id", ""));
      }
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
