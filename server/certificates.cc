#include "server/certificates.h"

#include "absl/strings/str_cat.h"
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "core/certs/bundle.h"

namespace unlearning::server {

absl::StatusOr<CertificateRecord> SealCertificate(v1::Certificate cert,
                                                  const core::certs::SigningKey& key) {
  cert.set_format(core::certs::kFormatJcsEd25519V1);
  cert.set_signing_key_id(key.key_id());
  cert.clear_certificate_sha256();
  cert.clear_signature_ed25519();
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  auto printed = google::protobuf::util::MessageToJsonString(cert, &text, options);
  nlohmann::json document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!printed.ok() || !document.is_object()) {
    return absl::InternalError(
        absl::StrCat("certificate ", cert.certificate_id(), " does not print as JSON"));
  }
  document.erase("certificate_sha256");
  document.erase("signature_ed25519");
  absl::StatusOr<core::certs::SealedRecord> sealed = core::certs::Seal(document, key);
  if (!sealed.ok()) {
    return absl::InternalError(absl::StrCat("certificate ", cert.certificate_id(),
                                            " cannot be sealed: ", sealed.status().message()));
  }
  CertificateRecord record;
  record.certificate_id = cert.certificate_id();
  record.model_id = cert.model_id();
  record.json = std::move(sealed->payload);
  record.sha256 = std::move(sealed->sha256);
  record.previous_sha256 = cert.previous_certificate_sha256();
  record.format = std::move(sealed->format);
  record.signature_hex = std::move(sealed->signature_hex);
  record.key_id = std::move(sealed->key_id);
  return record;
}

void MarkSealed(const CertificateRecord& record, v1::Certificate& cert) {
  cert.set_format(record.format);
  cert.set_signing_key_id(record.key_id);
  cert.set_certificate_sha256(record.sha256);
  cert.set_signature_ed25519(record.signature_hex);
}

v1::SealedCertificate SealedToProto(const CertificateRecord& record) {
  v1::SealedCertificate out;
  out.set_certificate_id(record.certificate_id);
  out.set_kind(record.kind);
  out.set_format(record.format.empty() ? core::certs::kFormatLegacy : record.format);
  out.set_payload(record.json);
  out.set_sha256(record.sha256);
  out.set_previous_sha256(record.previous_sha256);
  out.set_signature_ed25519(record.signature_hex);
  out.set_signing_key_id(record.key_id);
  out.set_created_unix_ms(record.created_unix_ms);
  return out;
}

v1::SigningKey SigningKeyToProto(const core::certs::SigningKey& key) {
  v1::SigningKey out;
  out.set_algorithm("ed25519");
  out.set_key_id(key.key_id());
  out.set_public_key_hex(core::certs::ToHex(key.public_key()));
  out.set_public_key_pem(core::certs::PublicKeyPem(key.public_key()).value_or(""));
  return out;
}

}  // namespace unlearning::server
