// Credentials of unlearnctl (docs/security.md): the bearer token (--token-file) and TLS files
// (--tls-ca, --tls-cert, --tls-key), and the `token` subcommands that make token-file lines.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "client/connection.h"

namespace unlearning::client {

// Reads the files named in `options` into its token / PEM fields. kInvalidArgument or kNotFound
// naming the flag when a file cannot be read or is malformed.
absl::Status LoadCredentials(GlobalOptions& options);

// The token in a token file: its first line, surrounding whitespace removed.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// What `unlearnctl token new|hash` makes a token-file line of.
struct TokenSpec {
  std::string name;
  std::vector<std::string> roles;
  std::vector<std::string> models;  // empty = every model
  std::string expires;              // RFC 3339 time ("" = none)
  std::string valid_for;            // or a duration from now: 30d, 12h, 90m ("" = none)
};

// The expiry `spec` asks for, as an RFC 3339 UTC time ("" = none). kInvalidArgument naming the
// flag when malformed, in the past, or both flags are given.
absl::StatusOr<std::string> TokenExpiry(const TokenSpec& spec, absl::Time now);

// The server's token-file line for `token` (JSON: name, sha256, roles, models, expires).
std::string TokenLine(const TokenSpec& spec, const std::string& token, const std::string& expires);

// `unlearnctl token new`: draws a random token (256 bits, hex), writes it to `out` (mode 0600,
// never overwritten) and prints the server's token-file line.
int TokenNew(const TokenSpec& spec, const std::string& out);
// `unlearnctl token hash`: prints the token-file line for the token in `token_file`.
int TokenHash(const TokenSpec& spec, const std::string& token_file);

}  // namespace unlearning::client
