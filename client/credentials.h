// Credentials of unlearnctl (docs/security.md): the bearer token (--token-file) and TLS files
// (--tls-ca, --tls-cert, --tls-key), and the `token` subcommands that make token-file lines.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "client/connection.h"

namespace unlearning::client {

// Reads the files named in `options` into its token / PEM fields. kInvalidArgument or kNotFound
// naming the flag when a file cannot be read or is malformed.
absl::Status LoadCredentials(GlobalOptions& options);

// The token in a token file: its first line, surrounding whitespace removed.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// The server's token-file line for `token` (JSON: name, sha256, roles, models).
std::string TokenLine(const std::string& name, const std::string& token,
                      const std::vector<std::string>& roles,
                      const std::vector<std::string>& models);

// `unlearnctl token new`: draws a random token (256 bits, hex), writes it to `out` (mode 0600,
// never overwritten) and prints the server's token-file line.
int TokenNew(const std::string& name, const std::vector<std::string>& roles,
             const std::vector<std::string>& models, const std::string& out);
// `unlearnctl token hash`: prints the token-file line for the token in `token_file`.
int TokenHash(const std::string& name, const std::vector<std::string>& roles,
              const std::vector<std::string>& models, const std::string& token_file);

}  // namespace unlearning::client
