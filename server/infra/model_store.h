// On-disk model store: one directory per published version,
//   <data_dir>/models/<model_id>/v<N>/   (the artifact's files, e.g. Hugging Face
//   layout config.json + model.safetensors, and manifest.json listing every file
//   with its SHA-256: manifest.h)
// Versions are written atomically: into
// <data_dir>/models/<model_id>/.tmp-v<N>-<random>/, every file and the
// directory fsync'd, renamed to v<N>, the parent directory fsync'd. A reader
// never sees a half-written v<N>; a crash leaves at most a .tmp-* directory,
// removed by Open().
//
// The journal (journal.h) is the source of truth for which versions are
// published: the store only holds bytes. Publishing order is Save (store) then
// Journal::CompleteJob / AddVersion; a crash in between leaves an unreferenced
// v<N> that a later Save of the same version replaces.
//
// Thread-safety: a ModelStore is thread-safe (it has no mutable in-memory
// state; concurrent Saves of different (model, version) pairs are independent).
// Do not Save the same (model, version) from two threads at once: the scheduler
// runs one job per model at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/models/model.h"
#include "server/infra/manifest.h"

namespace unlearning::server {

// OK iff `model_id` matches [a-z0-9][a-z0-9._-]{0,63}; kInvalidArgument
// otherwise.
absl::Status ValidateModelId(std::string_view model_id);

// Writes a model's files into an existing (empty) directory.
using DirWriter = std::function<absl::Status(const std::string& dir)>;
// Loads a model directory (e.g. core::FamilyRegistry::Load).
using ModelLoader = std::function<absl::StatusOr<std::unique_ptr<core::Model>>(
    const std::string& dir, torch::Device device)>;

class ModelStore {
 public:
  // Creates <data_dir>/models if needed and removes stale .tmp-* directories
  // left by a crash. kInternal on filesystem errors.
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(const std::string& data_dir);

  // <data_dir>/models
  const std::string& root() const { return root_; }
  // <data_dir>/models/<model_id>/v<version> (whether or not it exists). No
  // validation.
  std::string VersionDir(const std::string& model_id, int64_t version) const;

  // Atomically writes `model` (core::Model::Save) as a full-weights version
  // `version` (>= 1) with its manifest; returns the final directory. An existing
  // v<version> directory (an orphan of a crash) is replaced. kInvalidArgument
  // for a bad model id or version.
  absl::StatusOr<std::string> Save(const std::string& model_id, int64_t version,
                                   const core::Model& model);
  // Same, with any writer (adapters, assistant models, generated files). The
  // manifest (manifest.h) is `header` with the files the writer wrote.
  absl::StatusOr<std::string> SaveWith(const std::string& model_id, int64_t version,
                                       const DirWriter& writer, const Manifest& header = {});
  // Same, copying `source_dir` recursively (regular files and directories), e.g.
  // importing a base model in the Hugging Face or diffusers layout, as a
  // full-weights version of `family`. kNotFound if source_dir does not exist.
  absl::StatusOr<std::string> Import(const std::string& model_id, int64_t version,
                                     const std::string& source_dir, const std::string& family = "");

  // Loads v<version> with `loader` (the server passes its family registry).
  // kNotFound if the version directory is missing.
  absl::StatusOr<std::unique_ptr<core::Model>> Load(const std::string& model_id, int64_t version,
                                                    torch::Device device,
                                                    const ModelLoader& loader) const;

  // Version numbers present on disk for the model, ascending (empty if none).
  absl::StatusOr<std::vector<int64_t>> ListVersionsOnDisk(const std::string& model_id) const;
  // Deletes v<version> (e.g. an orphan). OK if it does not exist.
  absl::Status RemoveVersion(const std::string& model_id, int64_t version);
  // Retention: deletes the version directory `dir` (a v<N> directory of this store) so that its
  // bytes are gone: renamed to .purge-v<N>-<random> (a reader never sees a half-deleted v<N>;
  // the model directory fsync'd), then every file unlinked and each directory fsync'd after its
  // entries are gone, the directories removed and the model directory fsync'd again. A crash
  // part-way leaves a .purge-* directory that Open() finishes deleting. Only the version
  // directory is touched (not its siblings, e.g. other versions). OK if `dir` does not exist;
  // kInvalidArgument for a directory that is not a version directory of this store. Returns the
  // number of files unlinked.
  absl::StatusOr<int64_t> PurgeVersionDir(const std::string& dir);
  // Removes every .tmp-* and .purge-* directory under the store; returns how many. Called by
  // Open().
  absl::StatusOr<int> CleanupStaleTemps();

 private:
  explicit ModelStore(std::string root) : root_(std::move(root)) {}

  std::string root_;
};

}  // namespace unlearning::server
