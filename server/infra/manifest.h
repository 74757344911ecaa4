// A stored version's manifest (<version dir>/manifest.json): what the artifact is, which version
// it sits on, and every file with its SHA-256, so that a version is verifiable on its own and a
// certificate can hash exactly what was published.
//
//   {"format": "unlearning.manifest.v1", "kind": "full_weights", "family": "causal_lm",
//    "parent_version": 0, "files": [{"path": "config.json", "bytes": 612, "sha256": "..."}, ...],
//    "facts": {...}}
//
// Files are every regular file under the version directory except manifest.json, by relative
// path ('/'-separated), sorted. The manifest is written with sorted keys and no whitespace; the
// version's identity is the SHA-256 of those bytes (ManifestSha256).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace unlearning::server {

inline constexpr const char* kManifestFileName = "manifest.json";
inline constexpr const char* kManifestFormat = "unlearning.manifest.v1";

struct ManifestFile {
  std::string path;  // relative to the version directory
  int64_t bytes = 0;
  std::string sha256;
};

struct Manifest {
  std::string kind = "full_weights";  // core::ArtifactKindName
  std::string family;                 // core::ModelFamilyName
  int64_t parent_version = 0;         // the version the artifact needs or came from; 0 = none
  std::vector<ManifestFile> files;
  nlohmann::json facts = nlohmann::json::object();

  nlohmann::json ToJson() const;
  // kInvalidArgument naming the bad key.
  static absl::StatusOr<Manifest> FromJson(const nlohmann::json& json);
};

// Every regular file under `dir` except manifest.json, hashed, sorted by path.
absl::StatusOr<std::vector<ManifestFile>> HashTree(const std::string& dir);

// Hashes `dir`'s files into `manifest.files` and writes <dir>/manifest.json. Returns the
// manifest's SHA-256.
absl::StatusOr<std::string> WriteManifest(const std::string& dir, Manifest manifest);

// Reads <dir>/manifest.json. With `verify`, re-hashes the directory and returns kDataLoss naming
// the first file that is missing, extra or changed. kNotFound if there is no manifest.
absl::StatusOr<Manifest> ReadManifest(const std::string& dir, bool verify);

// SHA-256 of <dir>/manifest.json's bytes. kNotFound if it is missing.
absl::StatusOr<std::string> ManifestSha256(const std::string& dir);

}  // namespace unlearning::server
