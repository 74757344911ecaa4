// `unlearnctl certificate export | verify | key`: a model's sealed certificate chain as a
// self-contained bundle, its offline verification, and the server's public key
// (docs/certificates.md).
#pragma once

#include <string>

#include "client/connection.h"

namespace unlearning::client {

// Writes the bundle of `model_id`'s chain (core/certs/bundle.h) to `out` ("" or "-" = stdout).
int CertificateExport(Connection& connection, const std::string& model_id, const std::string& out);

// Checks a bundle offline against a public key file (PEM or 64 hex digits): prints one line per
// record ("ok" or each problem) and returns kExitOk only if every record holds, else
// kExitVerifyFailed (kExitUsage for an unreadable bundle or key).
int CertificateVerify(const std::string& bundle_path, const std::string& public_key_path,
                      bool allow_legacy, bool json);

// Prints the server's signing key (algorithm, key id, hex, PEM); with `pem_out` also writes the
// PEM there.
int CertificateKey(Connection& connection, const std::string& pem_out);

}  // namespace unlearning::client
