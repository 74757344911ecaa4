// Sealing certificates for the journal and converting sealed records for the API
// (docs/certificates.md). Every certificate the server writes goes through SealCertificate: its
// payload is the RFC 8785 canonical form of the certificate's protobuf JSON (field names as in
// the proto, every field present, int64 as strings) without certificate_sha256 and
// signature_ed25519; its hash is that payload's SHA-256 and it is signed with the server's
// Ed25519 key. The chain link is the certificate's previous_certificate_sha256.
#pragma once

#include "absl/status/statusor.h"

#include "core/certs/ed25519.h"
#include "server/infra/journal.h"
#include "unlearning/v1/erasure.pb.h"

namespace unlearning::server {

// The journal record of `cert` (kind erasure, no job id: callers fill job_id / kind): sets its
// format (jcs-ed25519-v1) and signing_key_id, canonicalises, hashes and signs it. kInternal if the
// certificate has no canonical form (e.g. invalid UTF-8, which the request validation prevents).
absl::StatusOr<CertificateRecord> SealCertificate(v1::Certificate cert,
                                                  const core::certs::SigningKey& key);

// Sets the seal's fields on `cert` (format, signing_key_id, certificate_sha256,
// signature_ed25519) from its journal record.
void MarkSealed(const CertificateRecord& record, v1::Certificate& cert);

// A stored record as sealed (format "" is reported as legacy-protojson-sha256).
v1::SealedCertificate SealedToProto(const CertificateRecord& record);
// The public half of the key.
v1::SigningKey SigningKeyToProto(const core::certs::SigningKey& key);

}  // namespace unlearning::server
