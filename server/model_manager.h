// Model lifecycle on the server: load a user's Hugging Face-layout directory as a new model,
// restore models and their serving versions from the journal at startup, resolve the version a
// query names, publish a job's result, roll back. Ties the journal (what is published), the model
// store (the bytes) and the registry (what is resident) together.
//
// Retention ("erased means erased"): a version older than a completed erasure still holds the
// erased data. Once the erasure is published and `purge_grace_seconds` have passed (0, the
// default: at once), such a version is purged: marked in the journal (when, and by which erasure
// job) and its directory deleted from the store (ModelStore::PurgeVersionDir). Kept regardless:
// the serving version, and every version a kept version loads through (the parents of adapter
// and assistant artifacts) or shares its files with (a rollback shares its target's directory).
// A negative grace keeps every version forever. Rolling back across a completed erasure needs
// `force` and is recorded in the certificate chain (Journal::RecordForcedRollback).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include <torch/types.h>

#include "core/certs/ed25519.h"
#include "server/infra/journal.h"
#include "server/infra/metrics.h"
#include "server/infra/model_store.h"
#include "server/model_registry.h"
#include "unlearning/v1/models.pb.h"

namespace unlearning::server {

// Thread-safe. Model-mutating calls (load, rollback, publish) are serialised.
class ModelManager {
 public:
  // `purge_grace_seconds`: how long versions older than a completed erasure stay after it is
  // published (0 = purged at once; < 0 = kept forever). `signing_key` seals the certificate of a
  // forced rollback (borrowed; without one a forced rollback is kFailedPrecondition).
  ModelManager(Journal* journal, ModelStore* store, ModelRegistry* registry, Metrics* metrics,
               const core::FamilyRegistry* families, torch::Device device,
               int64_t purge_grace_seconds = 0,
               const core::certs::SigningKey* signing_key = nullptr);

  // Imports `dir` as version 1 of a new model `model_id` (a full-weights version with its
  // manifest). kInvalidArgument for a bad id or a directory that is not a loadable model of a
  // family the server serves; kAlreadyExists if the id is taken; kNotFound if the directory does
  // not exist.
  absl::Status LoadNew(const std::string& model_id, const std::string& dir);
  // Makes every journaled model resident at its current version (startup). First removes the
  // version directories of an interrupted publish: a v<N> above the journal's highest version of
  // its model was stored (ModelStore::SaveWith) but never committed (Journal::CompleteJob) before
  // a crash; no journal row lists it, and if the requeued job does not publish again (cancelled,
  // failed, nothing left to forget) nothing would ever replace it (#12, crash campaign).
  absl::Status RestoreAll();
  // The version to answer with: `version` 0 = the serving one. NOT_FOUND for an unknown model or
  // version. Loads a non-resident older version from the store on demand.
  absl::StatusOr<std::shared_ptr<const ServedVersion>> Resolve(const std::string& model_id,
                                                               int64_t version);
  // Serves an earlier version again, recorded as a new version whose parent is the current one.
  // A target older than completed erasures (it still holds their data) is kFailedPrecondition
  // naming them unless `force`; a forced rollback is appended to the certificate chain as
  // undoing them, and the new version lists them (undoes_job_ids / undoes_request_ids). A purged
  // target is kFailedPrecondition.
  absl::StatusOr<v1::ModelInfo> Rollback(const std::string& model_id, int64_t version,
                                         bool force = false);
  // Makes a version already committed by Journal::CompleteJob resident and serving, then applies
  // the retention policy to the model (a failure to purge is logged, not returned: the version is
  // published; the next sweep retries).
  absl::Status PublishResident(const std::string& model_id,
                               std::shared_ptr<const ServedVersion> version);
  // Purges every version of `model_id` ("" = every model) that is due under the retention policy
  // (see the top of this file), and finishes purges a crash interrupted. Returns how many
  // versions it purged. Called after each publish, at startup and periodically by the server.
  absl::StatusOr<int> ApplyRetention(const std::string& model_id = "");
  int64_t purge_grace_seconds() const { return purge_grace_seconds_; }

  absl::StatusOr<v1::ModelInfo> Describe(const std::string& model_id);
  absl::StatusOr<std::vector<v1::ModelInfo>> List();

  // The resolved chain of a stored version from the manifests (itself first, then each parent
  // its artifact needs). kDataLoss if a manifest is missing or malformed, or the chain loops.
  absl::StatusOr<std::vector<ChainEntry>> ResolveChain(const std::string& model_id,
                                                       int64_t version);

  ModelRegistry& registry() { return *registry_; }
  const core::FamilyRegistry& families() const { return *families_; }
  torch::Device device() const { return device_; }

 private:
  absl::StatusOr<std::shared_ptr<const ServedModelInfo>> MakeInfo(const ModelRecord& record,
                                                                  const core::Model& model);
  // Loads a stored version: verifies its manifest against its files, loads its parent chain
  // first when its artifact needs it, and builds the servable model with the family's loader
  // (the family of a self-contained version is recognised from its files; an adapter or assistant
  // takes its parent's).
  absl::StatusOr<std::shared_ptr<ServedVersion>> LoadVersion(const std::string& model_id,
                                                             const ModelVersionRecord& record,
                                                             int depth = 0);
  // RestoreAll's first step for one model; returns how many directories it removed.
  absl::StatusOr<int> RemoveUncommittedLocked(const std::string& model_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutate_mu_);
  absl::StatusOr<int> ApplyRetentionLocked(const std::string& model_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutate_mu_);

  Journal* journal_;
  ModelStore* store_;
  ModelRegistry* registry_;
  Metrics* metrics_;
  const core::FamilyRegistry* families_;
  torch::Device device_;
  int64_t purge_grace_seconds_;
  const core::certs::SigningKey* signing_key_;
  absl::Mutex mutate_mu_;  // serialises LoadNew / Rollback / PublishResident / ApplyRetention
};

}  // namespace unlearning::server
