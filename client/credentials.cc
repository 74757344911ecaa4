#include "client/credentials.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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

absl::StatusOr<std::string> TokenExpiry(const TokenSpec& spec, absl::Time now) {
  if (!spec.expires.empty() && !spec.valid_for.empty()) {
    return absl::InvalidArgumentError("give --expires or --valid-for, not both");
  }
  absl::Time at = absl::InfiniteFuture();
  if (!spec.expires.empty()) {
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, spec.expires, &at, &err)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--expires must be an RFC 3339 time such as 2027-06-30T00:00:00Z, got '",
                       spec.expires, "'"));
    }
  } else if (!spec.valid_for.empty()) {
    // absl's durations (12h, 90m, 1h30m) plus whole days (30d).
    const std::string& v = spec.valid_for;
    absl::Duration d;
    bool parsed = false;
    if (v.size() > 1 && v.back() == 'd') {
      int64_t days = 0;
      parsed = absl::SimpleAtoi(v.substr(0, v.size() - 1), &days);
      d = absl::Hours(24) * days;
    } else {
      parsed = absl::ParseDuration(v, &d);
    }
    if (!parsed || d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--valid-for must be a positive duration such as 30d, 12h or 90m, got '", v, "'"));
    }
    at = now + d;
  } else {
    return std::string();
  }
  if (at <= now) {
    return absl::InvalidArgumentError(absl::StrCat("--expires ", spec.expires,
                                                   " is not in the future (a token that is already "
                                                   "expired would be refused)"));
  }
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", at, absl::UTCTimeZone());
}

std::string TokenLine(const TokenSpec& spec, const std::string& token, const std::string& expires) {
  nlohmann::ordered_json j;
  j["name"] = spec.name;
  j["sha256"] = Sha256Hex(token);
  j["roles"] = spec.roles;
  if (!spec.models.empty()) j["models"] = spec.models;
  if (!expires.empty()) j["expires"] = expires;
  return j.dump();
}

namespace {

// The role and expiry checks both commands make first; sets `expires` or returns an exit code.
std::optional<int> CheckSpec(const TokenSpec& spec, std::string& expires) {
  if (!ValidRoles(spec.roles)) {
    return Fail(kExitUsage, "--role must be query, erase, admin or metrics");
  }
  absl::StatusOr<std::string> at = TokenExpiry(spec, absl::Now());
  if (!at.ok()) return Fail(kExitUsage, std::string(at.status().message()));
  expires = *at;
  return std::nullopt;
}

}  // namespace

int TokenNew(const TokenSpec& spec, const std::string& out) {
  std::string expires;
  if (std::optional<int> bad = CheckSpec(spec, expires)) return *bad;
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
  std::cout << TokenLine(spec, token, expires) << std::endl;
  std::cerr << "unlearnctl: token written to " << out
            << " (mode 0600); add the line above to the server's --token-file and send SIGHUP"
            << std::endl;
  return kExitOk;
}

int TokenHash(const TokenSpec& spec, const std::string& token_file) {
  std::string expires;
  if (std::optional<int> bad = CheckSpec(spec, expires)) return *bad;
  absl::StatusOr<std::string> token = ReadTokenFile(token_file);
  if (!token.ok()) return Fail(kExitUsage, std::string(token.status().message()));
  std::cout << TokenLine(spec, *token, expires) << std::endl;
  return kExitOk;
}

}  // namespace unlearning::client
