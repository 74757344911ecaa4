// The in-memory table of served models: for each model, its static description, verification
// probe sets and the version that answers queries. Publishing a version is a pointer swap under a
// short lock: readers holding the previous version finish on it (shared ownership).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "core/app/family_registry.h"
#include "core/methods/method.h"
#include "core/models/model.h"

namespace unlearning::server {

// One link of a version's resolved chain (the version itself, then each parent its artifact needs).
struct ChainEntry {
  int64_t version = 0;
  core::ArtifactKind kind = core::ArtifactKind::kFullWeights;
  std::string manifest_sha256;
};

// One immutable, resident model version.
struct ServedVersion {
  int64_t version = 0;
  std::string dir;              // where its artifact's files live
  std::string manifest_sha256;  // of <dir>/manifest.json (which hashes every file)
  core::ArtifactKind kind = core::ArtifactKind::kFullWeights;
  std::vector<ChainEntry> chain;  // resolved chain, this version first
  // The servable model (for adapters and assistants: the composite with its parents).
  std::shared_ptr<const core::Model> model;
};

// Static facts of a served model.
struct ServedModelInfo {
  std::string model_id;
  core::ModelFamily family = core::ModelFamily::kCausalLm;
  std::string architecture;
  std::string source_dir;
  int64_t num_parameters = 0;
  // The family's row (loader, verifier) in the server's family registry.
  const core::FamilySpec* family_spec = nullptr;
  // Verification probes shipped in <source_dir>/probes/ (may be empty).
  core::ModelProbes probes;
};

// Thread-safe.
class ModelRegistry {
 public:
  // kAlreadyExists if the id is taken.
  absl::Status Add(std::shared_ptr<const ServedModelInfo> info,
                   std::shared_ptr<const ServedVersion> serving);
  // kNotFound ("model 'x' is not loaded (loaded: a, b)").
  absl::StatusOr<std::shared_ptr<const ServedModelInfo>> Info(const std::string& model_id) const;
  absl::StatusOr<std::shared_ptr<const ServedVersion>> Serving(const std::string& model_id) const;
  // The resident version `version` whose manifest (which hashes every file) has SHA-256
  // `manifest_sha256`, if the registry holds it (serving or recently used), else null: the
  // resident set is keyed by content, so a copy that is not the journal's version of record is
  // never answered from.
  std::shared_ptr<const ServedVersion> Resident(const std::string& model_id, int64_t version,
                                                const std::string& manifest_sha256) const;
  // Keeps a non-serving version resident (bounded: at most kMaxExtraResident per model).
  void CacheResident(const std::string& model_id, std::shared_ptr<const ServedVersion> version);
  // Drops a non-serving version from the resident cache (e.g. once it is purged); in-flight
  // queries holding it finish on it. No-op if it is not cached.
  void Evict(const std::string& model_id, int64_t version);
  // Makes `version` the serving one (pointer swap). kNotFound for an unknown model.
  absl::Status Publish(const std::string& model_id, std::shared_ptr<const ServedVersion> version);
  std::vector<std::string> ModelIds() const;
  bool Contains(const std::string& model_id) const;

  static constexpr int kMaxExtraResident = 2;

 private:
  struct Entry {
    std::shared_ptr<const ServedModelInfo> info;
    std::shared_ptr<const ServedVersion> serving;
    std::vector<std::shared_ptr<const ServedVersion>> extra;  // most recent last
  };
  absl::Status NotFound(const std::string& model_id) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Entry> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace unlearning::server
