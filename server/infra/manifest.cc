#include "server/infra/manifest.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

#include "core/common/sha256.h"
#include "core/common/status_macros.h"

namespace unlearning::server {
namespace fs = std::filesystem;

nlohmann::json Manifest::ToJson() const {
  nlohmann::json files_json = nlohmann::json::array();
  for (const ManifestFile& f : files) {
    files_json.push_back({{"path", f.path}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  }
  return {{"format", kManifestFormat},        {"kind", kind},        {"family", family},
          {"parent_version", parent_version}, {"files", files_json}, {"facts", facts}};
}

absl::StatusOr<Manifest> Manifest::FromJson(const nlohmann::json& json) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: ", what));
  };
  if (!json.is_object()) return bad("not a JSON object");
  if (json.value("format", "") != kManifestFormat) {
    return bad(absl::StrCat("format must be \"", kManifestFormat, "\""));
  }
  Manifest m;
  if (!json.contains("kind") || !json["kind"].is_string()) return bad("kind must be a string");
  m.kind = json["kind"].get<std::string>();
  if (json.contains("family") && json["family"].is_string()) {
    m.family = json["family"].get<std::string>();
  }
  if (!json.contains("parent_version") || !json["parent_version"].is_number_integer()) {
    return bad("parent_version must be an integer");
  }
  m.parent_version = json["parent_version"].get<int64_t>();
  if (!json.contains("files") || !json["files"].is_array()) return bad("files must be an array");
  for (const auto& f : json["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string() || !f.contains("sha256") ||
        !f["sha256"].is_string() || !f.contains("bytes") || !f["bytes"].is_number_integer()) {
      return bad("every file needs path, bytes and sha256");
    }
    m.files.push_back(
        {f["path"].get<std::string>(), f["bytes"].get<int64_t>(), f["sha256"].get<std::string>()});
  }
  if (json.contains("facts") && json["facts"].is_object()) m.facts = json["facts"];
  return m;
}

absl::StatusOr<std::vector<ManifestFile>> HashTree(const std::string& dir) {
  std::vector<ManifestFile> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string rel = fs::relative(it->path(), dir, ec).generic_string();
    if (ec) break;
    if (rel == kManifestFileName) continue;
    UNL_ASSIGN_OR_RETURN(std::string sha, core::Sha256File(it->path().string()));
    files.push_back({rel, static_cast<int64_t>(it->file_size(ec)), std::move(sha)});
  }
  if (ec) return absl::InternalError(absl::StrCat("manifest: listing ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end(),
            [](const ManifestFile& a, const ManifestFile& b) { return a.path < b.path; });
  return files;
}

absl::StatusOr<std::string> WriteManifest(const std::string& dir, Manifest manifest) {
  UNL_ASSIGN_OR_RETURN(manifest.files, HashTree(dir));
  const std::string text = manifest.ToJson().dump();
  const std::string path = (fs::path(dir) / kManifestFileName).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("manifest: cannot write ", path));
  return core::Sha256Hex(text);
}

absl::StatusOr<Manifest> ReadManifest(const std::string& dir, bool verify) {
  const std::string path = (fs::path(dir) / kManifestFileName).string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("no manifest ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const nlohmann::json json = nlohmann::json::parse(buffer.str(), nullptr, false);
  absl::StatusOr<Manifest> manifest = Manifest::FromJson(json);
  if (!manifest.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", manifest.status().message()));
  }
  if (!verify) return manifest;
  UNL_ASSIGN_OR_RETURN(std::vector<ManifestFile> actual, HashTree(dir));
  for (const ManifestFile& want : manifest->files) {
    auto it = std::find_if(actual.begin(), actual.end(),
                           [&](const ManifestFile& f) { return f.path == want.path; });
    if (it == actual.end()) {
      return absl::DataLossError(absl::StrCat(dir, ": file ", want.path, " is missing"));
    }
    if (it->sha256 != want.sha256) {
      return absl::DataLossError(
          absl::StrCat(dir, ": file ", want.path, " does not match its manifest SHA-256"));
    }
  }
  if (actual.size() != manifest->files.size()) {
    for (const ManifestFile& f : actual) {
      if (std::none_of(manifest->files.begin(), manifest->files.end(),
                       [&](const ManifestFile& m) { return m.path == f.path; })) {
        return absl::DataLossError(absl::StrCat(dir, ": file ", f.path, " is not in the manifest"));
      }
    }
  }
  return manifest;
}

absl::StatusOr<std::string> ManifestSha256(const std::string& dir) {
  const std::string path = (fs::path(dir) / kManifestFileName).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    return absl::NotFoundError(absl::StrCat("no manifest ", path));
  return core::Sha256File(path);
}

}  // namespace unlearning::server
