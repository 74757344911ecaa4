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

#include "core/data/text_example.h"
#include "core/models/model.h"

namespace unlearning::server {

// One immutable, resident model version.
struct ServedVersion {
  int64_t version = 0;
  std::string dir;             // where its weights live
  std::string weights_sha256;  // of model.safetensors
  std::shared_ptr<const core::Model> model;
  // Verification figures of this version on the model's probe sets, computed lazily by the job
  // runner (the "before" side of the next job); guarded by ModelRegistry.
};

// Static facts of a served model.
struct ServedModelInfo {
  std::string model_id;
  core::ModelFamily family = core::ModelFamily::kCausalLm;
  std::string architecture;
  std::string source_dir;
  int64_t num_parameters = 0;
  // Probe sets shipped in <source_dir>/probes/{retain,holdout}.jsonl (may be empty): verification
  // uses them when a request carries no retain set, and for membership-inference figures.
  std::vector<core::TextExample> retain_probes;
  std::vector<core::TextExample> holdout_probes;
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
  // The resident version `version` if the registry holds it (serving or recently used), else null.
  std::shared_ptr<const ServedVersion> Resident(const std::string& model_id, int64_t version) const;
  // Keeps a non-serving version resident (bounded: at most kMaxExtraResident per model).
  void CacheResident(const std::string& model_id, std::shared_ptr<const ServedVersion> version);
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
