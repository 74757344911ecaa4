#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace unlearning::core {

// Incremental SHA-256. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // Returns the lower-case hex digest; the object must not be updated afterwards.
  std::string HexDigest();

 private:
  void* ctx_;  // EVP_MD_CTX*, kept opaque so OpenSSL stays out of the header.
};

// SHA-256 (hex) of `data`.
std::string Sha256Hex(std::string_view data);

// SHA-256 (hex) of a file's bytes. kNotFound / kInternal on IO errors.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace unlearning::core
