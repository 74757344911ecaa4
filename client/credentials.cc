#include "client/credentials.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "client/exit_codes.h"

namespace unlearning::client {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(flag, ": cannot read '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  absl::StatusOr<std::string> text = ReadFile(path, flag);
  if (text.ok() && text->find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", path, "' is not a PEM file"));
  }
  return text;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), static_cast<size_t>(size)));
}

bool ValidRoles(const std::vector<std::string>& roles) {
  if (roles.empty()) return false;
  for (const std::string& r : roles) {
    if (r != "query" && r != "erase" && r != "admin" && r != "metrics") return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, "--token-file");
  if (!text.ok()) return text.status();
  std::string first = text->substr(0, text->find('\n'));
  std::string token(absl::StripAsciiWhitespace(first));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: '", path, "' is empty (it holds the token on its first line)"));
  }
  return token;
}

absl::Status LoadCredentials(GlobalOptions& options) {
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(options.token_file);
    if (!token.ok()) return token.status();
    options.token = *std::move(token);
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!options.tls_cert.empty() && options.tls_ca.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert needs --tls-ca (the CA that signed the server's certificate)");
  }
  if (!options.tls_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(options.tls_ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    options.tls_ca_pem = *std::move(ca);
  }
  if (!options.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(options.tls_cert, "--tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(options.tls_key, "--tls-key");
    if (!key.ok()) return key.status();
    options.tls_cert_pem = *std::move(cert);
    options.tls_key_pem = *std::move(key);
  }
  return absl::OkStatus();
}

std::string TokenLine(const std::string& name, const std::string& token,
                      const std::vector<std::string>& roles,
                      const std::vector<std::string>& models) {
  nlohmann::ordered_json j;
  j["name"] = name;
  j["sha256"] = Sha256Hex(token);
  j["roles"] = roles;
  if (!models.empty()) j["models"] = models;
  return j.dump();
}

int TokenNew(const std::string& name, const std::vector<std::string>& roles,
             const std::vector<std::string>& models, const std::string& out) {
  if (!ValidRoles(roles)) return Fail(kExitUsage, "--role must be query, erase, admin or metrics");
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return Fail(kExitError, "cannot draw random bytes");
  const std::string token = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    return Fail(kExitError, absl::StrCat("cannot create --out '", out, "': ", std::strerror(errno),
                                         " (an existing token file is never overwritten)"));
  }
  const std::string line = token + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!written) return Fail(kExitError, absl::StrCat("cannot write '", out, "'"));
  std::cout << TokenLine(name, token, roles, models) << std::endl;
  std::cerr << "unlearnctl: token written to " << out
            << " (mode 0600); add the line above to the server's --token-file and send SIGHUP"
            << std::endl;
  return kExitOk;
}

int TokenHash(const std::string& name, const std::vector<std::string>& roles,
              const std::vector<std::string>& models, const std::string& token_file) {
  if (!ValidRoles(roles)) return Fail(kExitUsage, "--role must be query, erase, admin or metrics");
  absl::StatusOr<std::string> token = ReadTokenFile(token_file);
  if (!token.ok()) return Fail(kExitUsage, std::string(token.status().message()));
  std::cout << TokenLine(name, *token, roles, models) << std::endl;
  return kExitOk;
}

}  // namespace unlearning::client
