// Model lifecycle on the server: load a user's Hugging Face-layout directory as a new model,
// restore models and their serving versions from the journal at startup, resolve the version a
// query names, publish a job's result, roll back. Ties the journal (what is published), the model
// store (the bytes) and the registry (what is resident) together.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include <torch/types.h>

#include "server/infra/journal.h"
#include "server/infra/metrics.h"
#include "server/infra/model_store.h"
#include "server/model_registry.h"
#include "unlearning/v1/models.pb.h"

namespace unlearning::server {

// Thread-safe. Model-mutating calls (load, rollback, publish) are serialised.
class ModelManager {
 public:
  ModelManager(Journal* journal, ModelStore* store, ModelRegistry* registry, Metrics* metrics,
               const core::FamilyRegistry* families, torch::Device device);

  // Imports `dir` as version 1 of a new model `model_id` (a full-weights version with its
  // manifest). kInvalidArgument for a bad id or a directory that is not a loadable model of a
  // family the server serves; kAlreadyExists if the id is taken; kNotFound if the directory does
  // not exist.
  absl::Status LoadNew(const std::string& model_id, const std::string& dir);
  // Makes every journaled model resident at its current version (startup).
  absl::Status RestoreAll();
  // The version to answer with: `version` 0 = the serving one. NOT_FOUND for an unknown model or
  // version. Loads a non-resident older version from the store on demand.
  absl::StatusOr<std::shared_ptr<const ServedVersion>> Resolve(const std::string& model_id,
                                                               int64_t version);
  // Serves an earlier version again, recorded as a new version whose parent is the current one.
  absl::StatusOr<v1::ModelInfo> Rollback(const std::string& model_id, int64_t version);
  // Makes a version already committed by Journal::CompleteJob resident and serving.
  absl::Status PublishResident(const std::string& model_id,
                               std::shared_ptr<const ServedVersion> version);

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

  Journal* journal_;
  ModelStore* store_;
  ModelRegistry* registry_;
  Metrics* metrics_;
  const core::FamilyRegistry* families_;
  torch::Device device_;
  absl::Mutex mutate_mu_;  // serialises LoadNew / Rollback / PublishResident
};

}  // namespace unlearning::server
