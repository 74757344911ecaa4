// Helpers shared by the server_infra tests: a RAII temporary directory.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace unlearning::server::testing {

// Creates a fresh directory under $TMPDIR (or /tmp) and removes it recursively
// on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/unl_infra_test_XXXXXX";
    char* made = mkdtemp(tmpl.data());
    path_ = made != nullptr ? std::string(made) : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace unlearning::server::testing
