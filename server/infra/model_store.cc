#include "server/infra/model_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "core/common/sha256.h"
#include "core/common/status_macros.h"
#include "server/infra/manifest.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTempPrefix = ".tmp-";
constexpr const char* kPurgePrefix = ".purge-";

absl::Status FsError(const std::string& what, const std::string& path, const std::error_code& ec) {
  return absl::InternalError(absl::StrCat("model store: ", what, " ", path, ": ", ec.message()));
}

// fsync()s a file or directory.
absl::Status FsyncPath(const std::string& path, bool is_dir) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("model store: open ", path, " for fsync: ", std::strerror(errno)));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("model store: fsync ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

// fsyncs every regular file and directory under `dir` (depth first), then `dir`
// itself.
absl::Status FsyncTree(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_directory(st)) {
      UNL_RETURN_IF_ERROR(FsyncTree(it->path().string()));
    } else if (fs::is_regular_file(st)) {
      UNL_RETURN_IF_ERROR(FsyncPath(it->path().string(), /*is_dir=*/false));
    }
  }
  if (ec) return FsError("list", dir, ec);
  return FsyncPath(dir, /*is_dir=*/true);
}

// Unlinks every file under `dir` (depth first), fsyncing each directory once its entries are
// gone, then removes the (empty) directories. Counts the files unlinked in *files.
absl::Status UnlinkTree(const fs::path& dir, int64_t* files) {
  std::error_code ec;
  std::vector<fs::path> subdirs;
  std::vector<fs::path> others;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    (fs::is_directory(st) ? subdirs : others).push_back(it->path());
  }
  if (ec) return FsError("list", dir.string(), ec);
  for (const fs::path& sub : subdirs) UNL_RETURN_IF_ERROR(UnlinkTree(sub, files));
  for (const fs::path& file : others) {
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
      return absl::InternalError(
          absl::StrCat("model store: unlink ", file.string(), ": ", std::strerror(errno)));
    }
    ++*files;
  }
  for (const fs::path& sub : subdirs) {
    if (::rmdir(sub.c_str()) != 0 && errno != ENOENT) {
      return absl::InternalError(
          absl::StrCat("model store: rmdir ", sub.string(), ": ", std::strerror(errno)));
    }
  }
  return FsyncPath(dir.string(), /*is_dir=*/true);
}

// Deletes `dir` (a directory being purged) with UnlinkTree, then `dir` itself, and fsyncs its
// parent.
absl::Status PurgeTree(const fs::path& dir, int64_t* files) {
  UNL_RETURN_IF_ERROR(UnlinkTree(dir, files));
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(
        absl::StrCat("model store: rmdir ", dir.string(), ": ", std::strerror(errno)));
  }
  return FsyncPath(dir.parent_path().string(), /*is_dir=*/true);
}

std::string RandomHex() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x", rd(), rd());
}

// Parses "v<digits>" -> version; false otherwise.
bool ParseVersionDirName(const std::string& name, int64_t* version) {
  if (name.size() < 2 || name[0] != 'v') return false;
  for (size_t i = 1; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  return absl::SimpleAtoi(name.substr(1), version) && *version >= 1;
}

}  // namespace

absl::Status ValidateModelId(std::string_view model_id) {
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = !model_id.empty() && model_id.size() <= 64 && lower_or_digit(model_id[0]);
  for (size_t i = 1; ok && i < model_id.size(); ++i) {
    const char c = model_id[i];
    ok = lower_or_digit(c) || c == '.' || c == '_' || c == '-';
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid model id '", std::string(model_id.substr(0, 80)),
                     "': expected 1-64 characters [a-z0-9._-] starting with a "
                     "lower-case letter or digit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(const std::string& data_dir) {
  if (data_dir.empty()) return absl::InvalidArgumentError("model store: empty data dir");
  const std::string root = (fs::path(data_dir) / "models").string();
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return FsError("create", root, ec);
  std::unique_ptr<ModelStore> store(new ModelStore(root));
  UNL_RETURN_IF_ERROR(store->CleanupStaleTemps().status());
  return store;
}

std::string ModelStore::VersionDir(const std::string& model_id, int64_t version) const {
  return (fs::path(root_) / model_id / absl::StrCat("v", version)).string();
}

absl::StatusOr<std::string> ModelStore::Save(const std::string& model_id, int64_t version,
                                             const core::Model& model) {
  Manifest header;
  header.family = core::ModelFamilyName(model.family());
  return SaveWith(
      model_id, version, [&model](const std::string& dir) { return model.Save(dir); }, header);
}

absl::StatusOr<std::string> ModelStore::SaveWith(const std::string& model_id, int64_t version,
                                                 const DirWriter& writer, const Manifest& header) {
  UNL_RETURN_IF_ERROR(ValidateModelId(model_id));
  if (version < 1) {
    return absl::InvalidArgumentError(absl::StrCat("model store: bad version ", version));
  }
  const std::string model_dir = (fs::path(root_) / model_id).string();
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    fs::create_directories(model_dir, ec);
    if (ec) return FsError("create", model_dir, ec);
    UNL_RETURN_IF_ERROR(FsyncPath(root_, /*is_dir=*/true));
  }
  const std::string tmp =
      (fs::path(model_dir) / absl::StrCat(kTempPrefix, "v", version, "-", RandomHex())).string();
  fs::create_directory(tmp, ec);
  if (ec) return FsError("create", tmp, ec);

  const std::string final_dir = VersionDir(model_id, version);
  absl::Status s = writer(tmp);
  if (s.ok()) s = WriteManifest(tmp, header).status();
  if (s.ok()) s = FsyncTree(tmp);
  if (s.ok() && fs::exists(final_dir, ec)) {
    // An unpublished leftover (crash between Save and the journal commit):
    // replace it.
    fs::remove_all(final_dir, ec);
    if (ec) s = FsError("remove", final_dir, ec);
  }
  if (s.ok()) {
    fs::rename(tmp, final_dir, ec);
    if (ec) s = FsError("rename to", final_dir, ec);
  }
  if (s.ok()) s = FsyncPath(model_dir, /*is_dir=*/true);
  if (!s.ok()) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    return s;
  }
  return final_dir;
}

absl::StatusOr<std::string> ModelStore::Import(const std::string& model_id, int64_t version,
                                               const std::string& source_dir,
                                               const std::string& family) {
  std::error_code ec;
  if (!fs::is_directory(source_dir, ec)) {
    return absl::NotFoundError(absl::StrCat("model store: no directory ", source_dir));
  }
  Manifest header;
  header.family = family;
  return SaveWith(
      model_id, version,
      [&source_dir](const std::string& dir) -> absl::Status {
        // Regular files and sub-directories (diffusers layout: unet/, scheduler/), not symlinks
        // to elsewhere; a user's own manifest.json is replaced by the store's.
        std::error_code ec2;
        for (fs::recursive_directory_iterator it(source_dir, ec2), end; !ec2 && it != end;
             it.increment(ec2)) {
          const fs::path rel = fs::relative(it->path(), source_dir, ec2);
          if (ec2) break;
          const fs::path target = fs::path(dir) / rel;
          if (it->is_directory(ec2)) {
            fs::create_directories(target, ec2);
          } else if (it->is_regular_file(ec2) && rel != kManifestFileName) {
            fs::copy_file(it->path(), target, ec2);
          }
          if (ec2) return FsError("copy", it->path().string(), ec2);
        }
        if (ec2) return FsError("list", source_dir, ec2);
        return absl::OkStatus();
      },
      header);
}

absl::StatusOr<std::unique_ptr<core::Model>> ModelStore::Load(const std::string& model_id,
                                                              int64_t version, torch::Device device,
                                                              const ModelLoader& loader) const {
  UNL_RETURN_IF_ERROR(ValidateModelId(model_id));
  const std::string dir = VersionDir(model_id, version);
  std::error_code ec;
  if (version < 1 || !fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model store: model ", model_id, " has no version ", version, " on disk"));
  }
  return loader(dir, device);
}

absl::StatusOr<std::vector<int64_t>> ModelStore::ListVersionsOnDisk(
    const std::string& model_id) const {
  UNL_RETURN_IF_ERROR(ValidateModelId(model_id));
  std::vector<int64_t> versions;
  const std::string model_dir = (fs::path(root_) / model_id).string();
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) return versions;
  for (fs::directory_iterator it(model_dir, ec), end; !ec && it != end; it.increment(ec)) {
    int64_t v = 0;
    if (it->is_directory(ec) && ParseVersionDirName(it->path().filename().string(), &v)) {
      versions.push_back(v);
    }
  }
  if (ec) return FsError("list", model_dir, ec);
  std::sort(versions.begin(), versions.end());
  return versions;
}

absl::Status ModelStore::RemoveVersion(const std::string& model_id, int64_t version) {
  UNL_RETURN_IF_ERROR(ValidateModelId(model_id));
  const std::string dir = VersionDir(model_id, version);
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::OkStatus();
  fs::remove_all(dir, ec);
  if (ec) return FsError("remove", dir, ec);
  return FsyncPath(fs::path(dir).parent_path().string(), /*is_dir=*/true);
}

absl::StatusOr<int64_t> ModelStore::PurgeVersionDir(const std::string& dir) {
  std::error_code ec;
  const fs::path path = fs::weakly_canonical(fs::absolute(dir, ec), ec);
  const fs::path root = fs::weakly_canonical(fs::absolute(root_, ec), ec);
  int64_t version = 0;
  const fs::path model_dir = path.parent_path();
  if (ec || !ParseVersionDirName(path.filename().string(), &version) ||
      model_dir.parent_path() != root || !ValidateModelId(model_dir.filename().string()).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model store: ", dir, " is not a version directory (", root_, "/<model>/v<N>)"));
  }
  if (!fs::exists(path, ec)) return 0;
  const fs::path doomed = model_dir / absl::StrCat(kPurgePrefix, "v", version, "-", RandomHex());
  fs::rename(path, doomed, ec);
  if (ec) return FsError("rename to", doomed.string(), ec);
  UNL_RETURN_IF_ERROR(FsyncPath(model_dir.string(), /*is_dir=*/true));
  int64_t files = 0;
  UNL_RETURN_IF_ERROR(PurgeTree(doomed, &files));
  return files;
}

absl::StatusOr<int> ModelStore::CleanupStaleTemps() {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator m(root_, ec), end; !ec && m != end; m.increment(ec)) {
    if (!m->is_directory(ec)) continue;
    std::vector<fs::path> stale;
    std::error_code ec2;
    for (fs::directory_iterator it(m->path(), ec2); !ec2 && it != end; it.increment(ec2)) {
      const std::string name = it->path().filename().string();
      if (name.rfind(kTempPrefix, 0) == 0 || name.rfind(kPurgePrefix, 0) == 0) {
        stale.push_back(it->path());
      }
    }
    if (ec2) return FsError("list", m->path().string(), ec2);
    for (const fs::path& p : stale) {
      if (p.filename().string().rfind(kPurgePrefix, 0) == 0) {
        int64_t files = 0;  // a purge interrupted by a crash: finish it the same way
        UNL_RETURN_IF_ERROR(PurgeTree(p, &files));
      } else {
        fs::remove_all(p, ec2);
        if (ec2) return FsError("remove", p.string(), ec2);
      }
      ++removed;
    }
    if (!stale.empty()) UNL_RETURN_IF_ERROR(FsyncPath(m->path().string(), /*is_dir=*/true));
  }
  if (ec) return FsError("list", root_, ec);
  return removed;
}

}  // namespace unlearning::server
