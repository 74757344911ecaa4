// Certificate bundles (core/certs) on arbitrary bytes: the input is parsed as JSON and verified
// with VerifyBundle against a fixed key (with and without legacy records), its canonical form
// (CanonicalJson, RFC 8785) is computed, and the input is also read as a public key file
// (ParsePublicKey). Never a crash; CanonicalJson and ParsePublicKey refuse with kInvalidArgument;
// the canonical form is a fixed point (canonicalising its parse gives the same bytes); a bundle
// verifies only if every record does.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/certs/bundle.h"
#include "core/certs/ed25519.h"
#include "core/certs/jcs.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace certs = ::unlearning::core::certs;

// A fixed Ed25519 test key (made with `openssl genpkey -algorithm ed25519`; signs nothing real).
constexpr char kTestKeyPem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEID1VtBRLaG0EpMTKnDLMhyG5vYlSjpwCM8iWXuqgBH6K\n"
    "-----END PRIVATE KEY-----\n";

const certs::SigningKey& Key() {
  static const certs::SigningKey* key = [] {
    absl::StatusOr<certs::SigningKey> k = certs::SigningKey::FromPrivatePem(kTestKeyPem);
    FUZZ_CHECK(k.ok());
    return new certs::SigningKey(*std::move(k));
  }();
  return *key;
}

// A chain of two sealed erasure certificates, as `unlearnctl certificate export` writes it.
void WriteSeeds(const std::string& dir) {
  std::vector<certs::SealedRecord> records;
  std::string previous;
  for (int i = 0; i < 2; ++i) {
    nlohmann::json doc = {{"certificate_id", "cert-" + std::to_string(i)},
                          {"kind", "erasure"},
                          {"format", certs::kFormatJcsEd25519V1},
                          {"signing_key_id", Key().key_id()},
                          {"model_id", "demo"},
                          {"previous_certificate_sha256", previous},
                          {"forget_set_sha256", std::string(64, 'a')},
                          {"figures", {{"forget.answer_probability", 0.04 + i}, {"n", 1 << 20}}},
                          {"created_unix_ms", 1764500000000LL + i},
                          {"note", "caf\xc3\xa9 \xf0\x9f\x98\x80 \"quoted\"\n"}};
    absl::StatusOr<certs::SealedRecord> r = certs::Seal(doc, Key());
    FUZZ_CHECK(r.ok());
    r->kind = "erasure";
    previous = r->sha256;
    records.push_back(*std::move(r));
  }
  absl::StatusOr<nlohmann::json> bundle = certs::MakeBundle("demo", records, Key().public_key());
  FUZZ_CHECK(bundle.ok());
  FUZZ_CHECK(certs::VerifyBundle(*bundle, Key().public_key(), false).ok());
  unlearning::fuzz::WriteSeed(dir, "bundle_two_records.json", bundle->dump(1));
  certs::SealedRecord legacy = records[0];
  legacy.format = certs::kFormatLegacy;
  legacy.signature_hex.clear();
  absl::StatusOr<nlohmann::json> mixed =
      certs::MakeBundle("demo", {legacy, records[1]}, Key().public_key());
  FUZZ_CHECK(mixed.ok());
  unlearning::fuzz::WriteSeed(dir, "bundle_legacy_record.json", mixed->dump());
  unlearning::fuzz::WriteSeed(dir, "public_key.hex", certs::ToHex(Key().public_key()) + "\n");
  absl::StatusOr<std::string> pem = certs::PublicKeyPem(Key().public_key());
  FUZZ_CHECK(pem.ok());
  unlearning::fuzz::WriteSeed(dir, "public_key.pem", *pem);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  unlearning::fuzz::MaybeWriteSeeds(WriteSeeds);
  (void)Key();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  FUZZ_CHECK_OK_OR_INVALID(certs::ParsePublicKey(text).status());

  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  absl::StatusOr<std::string> canonical = certs::CanonicalJson(json);
  FUZZ_CHECK_OK_OR_INVALID(canonical.status());
  if (canonical.ok()) {
    const nlohmann::json again =
        nlohmann::json::parse(*canonical, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(!again.is_discarded());
    absl::StatusOr<std::string> twice = certs::CanonicalJson(again);
    FUZZ_CHECK(twice.ok());
    FUZZ_CHECK(*twice == *canonical);
  }
  for (bool allow_legacy : {false, true}) {
    const certs::BundleVerdict verdict =
        certs::VerifyBundle(json, Key().public_key(), allow_legacy);
    if (verdict.ok()) {
      for (const certs::RecordVerdict& r : verdict.records) FUZZ_CHECK(r.ok());
    }
  }
  return 0;
}
