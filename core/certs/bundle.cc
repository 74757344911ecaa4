#include "core/certs/bundle.h"

#include "absl/strings/str_cat.h"

#include "core/certs/jcs.h"

namespace unlearning::core::certs {
namespace {

std::string Str(const nlohmann::json& object, const char* name) {
  if (!object.is_object()) return "";
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string Short(const std::string& sha) {
  return sha.empty() ? "\"\" (none)" : sha.substr(0, 16) + "...";
}

}  // namespace

absl::StatusOr<SealedRecord> Seal(const nlohmann::json& document, const SigningKey& key) {
  if (!document.is_object() || document.contains("signature_ed25519") ||
      document.contains("certificate_sha256")) {
    return absl::InvalidArgumentError(
        "seal: the document must be an object without signature_ed25519 and certificate_sha256");
  }
  auto canonical = CanonicalJson(document);
  if (!canonical.ok()) return canonical.status();
  auto signature = key.Sign(*canonical);
  if (!signature.ok()) return signature.status();
  SealedRecord r;
  r.certificate_id = Str(document, "certificate_id");
  r.format = kFormatJcsEd25519V1;
  r.sha256 = Sha256Hex(*canonical);
  r.previous_sha256 = Str(document, "previous_certificate_sha256");
  r.signature_hex = ToHex(*signature);
  r.key_id = key.key_id();
  r.payload = *std::move(canonical);
  return r;
}

absl::StatusOr<nlohmann::json> MakeBundle(const std::string& model_id,
                                          const std::vector<SealedRecord>& records,
                                          const std::string& public_key) {
  nlohmann::json out = {
      {"bundle_format", kBundleFormat},
      {"model_id", model_id},
      {"public_key",
       {{"algorithm", "ed25519"}, {"key_id", KeyId(public_key)}, {"hex", ToHex(public_key)}}},
      {"records", nlohmann::json::array()}};
  for (const SealedRecord& r : records) {
    nlohmann::json rec = {{"certificate_id", r.certificate_id},
                          {"kind", r.kind},
                          {"format", r.format},
                          {"sha256", r.sha256},
                          {"previous_sha256", r.previous_sha256},
                          {"signature", r.signature_hex},
                          {"key_id", r.key_id}};
    if (r.format == kFormatJcsEd25519V1) {
      nlohmann::json payload =
          nlohmann::json::parse(r.payload, nullptr, /*allow_exceptions=*/false);
      if (payload.is_discarded()) {
        return absl::InvalidArgumentError(
            absl::StrCat("certificate ", r.certificate_id, ": stored payload is not JSON"));
      }
      rec["certificate"] = std::move(payload);
    } else {
      rec["payload_text"] = r.payload;
    }
    out["records"].push_back(std::move(rec));
  }
  return out;
}

bool BundleVerdict::ok() const {
  if (!errors.empty()) return false;
  for (const RecordVerdict& r : records) {
    if (!r.ok()) return false;
  }
  return true;
}

BundleVerdict VerifyBundle(const nlohmann::json& bundle, const std::string& public_key,
                           bool allow_legacy) {
  BundleVerdict verdict;
  if (!bundle.is_object() || Str(bundle, "bundle_format") != kBundleFormat) {
    verdict.errors.push_back(
        absl::StrCat("not a certificate bundle (bundle_format is not \"", kBundleFormat, "\")"));
    return verdict;
  }
  if (!bundle.contains("records") || !bundle["records"].is_array()) {
    verdict.errors.push_back("bundle has no \"records\" array");
    return verdict;
  }
  if (public_key.size() != 32) {
    verdict.errors.push_back("the public key is not a 32-byte Ed25519 key");
    return verdict;
  }
  const std::string key_id = KeyId(public_key);
  const std::string model_id = Str(bundle, "model_id");
  std::string previous;  // the preceding record's hash
  const nlohmann::json& records = bundle["records"];
  for (size_t i = 0; i < records.size(); ++i) {
    const nlohmann::json& rec = records[i];
    RecordVerdict v;
    v.index = i;
    v.certificate_id = Str(rec, "certificate_id");
    auto fail = [&v](std::string message) { v.errors.push_back(std::move(message)); };
    const std::string format = Str(rec, "format");
    const std::string sha = Str(rec, "sha256");
    const std::string prev = Str(rec, "previous_sha256");
    if (!rec.is_object()) {
      fail("not a JSON object");
    } else if (format == kFormatJcsEd25519V1) {
      const auto it = rec.find("certificate");
      if (it == rec.end() || !it->is_object()) {
        fail("no \"certificate\" object");
      } else {
        const nlohmann::json& cert = *it;
        auto canonical = CanonicalJson(cert);
        if (!canonical.ok()) {
          fail(absl::StrCat("certificate has no canonical form: ", canonical.status().message()));
        } else {
          const std::string computed = Sha256Hex(*canonical);
          if (computed != sha) {
            fail(absl::StrCat("hash mismatch: the canonical certificate hashes to ",
                              Short(computed), " but the record says ", Short(sha),
                              " (the certificate was edited)"));
          }
          auto signature = FromHex(Str(rec, "signature"));
          if (!signature.ok() || !VerifyEd25519(public_key, *canonical, *signature)) {
            fail("signature does not verify with the given public key");
          }
        }
        if (Str(rec, "key_id") != key_id || Str(cert, "signing_key_id") != key_id) {
          fail(
              absl::StrCat("signed with key ", Str(rec, "key_id"), ", not the given key ", key_id));
        }
        if (Str(cert, "format") != kFormatJcsEd25519V1) {
          fail(absl::StrCat("certificate format is \"", Str(cert, "format"), "\", not \"",
                            kFormatJcsEd25519V1, "\""));
        }
        if (Str(cert, "previous_certificate_sha256") != prev) {
          fail("the certificate's previous_certificate_sha256 differs from the record's");
        }
        if (Str(cert, "certificate_id") != v.certificate_id) {
          fail("the certificate's certificate_id differs from the record's");
        }
        if (Str(cert, "model_id") != model_id) {
          fail(absl::StrCat("certificate of model \"", Str(cert, "model_id"),
                            "\" in the bundle of model \"", model_id, "\""));
        }
      }
    } else if (format == kFormatLegacy) {
      const std::string text = Str(rec, "payload_text");
      if (Sha256Hex(text) != sha) {
        fail("hash mismatch: the legacy payload_text was edited");
      }
      nlohmann::json cert = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (Str(cert, "previous_certificate_sha256") != prev) {
        fail("the certificate's previous_certificate_sha256 differs from the record's");
      }
      if (!allow_legacy) {
        fail(
            "legacy record (written before certificates were signed): its hash and link hold "
            "but nothing proves who wrote it (--allow-legacy accepts it)");
      }
    } else {
      fail(absl::StrCat("unknown format \"", format, "\""));
    }
    if (prev != previous) {
      fail(absl::StrCat("chain broken: links to ", Short(prev), " but the preceding record ",
                        i == 0 ? "does not exist (the chain must start with \"\")"
                               : absl::StrCat("hashes to ", Short(previous)),
                        " (a record was deleted, inserted or reordered)"));
    }
    previous = sha;
    verdict.records.push_back(std::move(v));
  }
  return verdict;
}

}  // namespace unlearning::core::certs
