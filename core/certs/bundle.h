// Certificate records as sealed (canonical bytes, hash, chain link, Ed25519 signature), the
// self-contained bundle `unlearnctl certificate export` writes, and its offline verification
// (docs/certificates.md; tools/verify_certificates.py is an independent implementation).
//
// Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/certs/ed25519.h"

namespace unlearning::core::certs {

// Formats of a sealed record. The current one: sha256 = SHA-256(JCS(payload)), Ed25519 signature
// over the same bytes.
inline constexpr const char* kFormatJcsEd25519V1 = "jcs-ed25519-v1";
// Records written before signing existed: sha256 over the protobuf JSON printer's text, no
// signature. Kept verbatim; a verifier can check their hash and chain but not who wrote them.
inline constexpr const char* kFormatLegacy = "legacy-protojson-sha256";
inline constexpr const char* kBundleFormat = "unlearning-certificate-bundle-v1";

// One record of a model's certificate chain.
struct SealedRecord {
  std::string certificate_id;
  std::string kind;  // "erasure" | "forced_rollback"
  std::string format;
  std::string payload;  // the exact bytes hashed (and signed)
  std::string sha256;
  std::string previous_sha256;
  std::string signature_hex;  // "" for legacy
  std::string key_id;
  int64_t created_unix_ms = 0;
};

// Seals a certificate document (a JSON object; must not hold "signature_ed25519" or
// "certificate_sha256"): payload = CanonicalJson(document), sha256, signature, key id, format
// jcs-ed25519-v1. kInvalidArgument if the document has no canonical form.
absl::StatusOr<SealedRecord> Seal(const nlohmann::json& document, const SigningKey& key);

// The bundle: {"bundle_format", "model_id", "public_key": {"algorithm","key_id","hex"},
// "records": [...]}, each record {"certificate_id","kind","format","certificate" (the payload as a
// JSON object; "payload_text" for legacy records),"sha256","previous_sha256","signature","key_id"}.
// kInvalidArgument if a v1 payload is not JSON.
absl::StatusOr<nlohmann::json> MakeBundle(const std::string& model_id,
                                          const std::vector<SealedRecord>& records,
                                          const std::string& public_key);

struct RecordVerdict {
  size_t index = 0;  // position in the bundle, from 0
  std::string certificate_id;
  std::vector<std::string> errors;  // empty = the record is good
  bool ok() const { return errors.empty(); }
};

struct BundleVerdict {
  std::vector<std::string> errors;  // about the bundle as a whole
  std::vector<RecordVerdict> records;
  bool ok() const;
};

// Checks every record of `bundle` offline against `public_key` (raw 32 bytes): its hash over the
// canonical form of its payload, its signature and key id, its link to the previous record (the
// first links to ""), and that its payload names the same previous hash. Legacy records fail
// unless `allow_legacy` (then only their hash and link are checked).
BundleVerdict VerifyBundle(const nlohmann::json& bundle, const std::string& public_key,
                           bool allow_legacy);

}  // namespace unlearning::core::certs
