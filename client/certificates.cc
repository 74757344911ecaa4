#include "client/certificates.h"

#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/exit_codes.h"
#include "client/format.h"
#include "core/certs/bundle.h"
#include "core/certs/ed25519.h"

namespace unlearning::client {
namespace {

namespace certs = core::certs;

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return in.good() || in.eof();
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  return out.good();
}

}  // namespace

int CertificateExport(Connection& connection, const std::string& model_id, const std::string& out) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::ListCertificatesRequest request;
  request.set_model_id(model_id);
  v1::ListCertificatesResponse response;
  grpc::Status status = connection.erasure().ListCertificates(&context, request, &response);
  if (!status.ok()) return connection.ReportRpcError(status);
  std::vector<certs::SealedRecord> records;
  for (const v1::SealedCertificate& c : response.certificates()) {
    records.push_back({c.certificate_id(), c.kind(), c.format(), c.payload(), c.sha256(),
                       c.previous_sha256(), c.signature_ed25519(), c.signing_key_id(),
                       c.created_unix_ms()});
  }
  auto public_key = certs::FromHex(response.signing_key().public_key_hex());
  if (!public_key.ok() || public_key->size() != 32) {
    return Fail(kExitError, "the server sent no valid signing key");
  }
  auto bundle = certs::MakeBundle(model_id, records, *public_key);
  if (!bundle.ok()) return Fail(kExitError, std::string(bundle.status().message()));
  const std::string text = bundle->dump(2) + "\n";
  if (out.empty() || out == "-") {
    std::cout << text << std::flush;
  } else {
    if (!WriteFile(out, text)) return Fail(kExitUsage, "cannot write " + out);
    std::cerr << "unlearnctl: exported " << records.size() << " certificate"
              << (records.size() == 1 ? "" : "s") << " of model " << model_id << " to " << out
              << " (signing key " << certs::KeyId(*public_key) << ")" << std::endl;
  }
  return kExitOk;
}

int CertificateVerify(const std::string& bundle_path, const std::string& public_key_path,
                      bool allow_legacy, bool json) {
  std::string bundle_text;
  std::string key_text;
  if (!ReadFile(bundle_path, &bundle_text)) return Fail(kExitUsage, "cannot read " + bundle_path);
  if (!ReadFile(public_key_path, &key_text)) {
    return Fail(kExitUsage, "cannot read " + public_key_path);
  }
  const nlohmann::json bundle =
      nlohmann::json::parse(bundle_text, nullptr, /*allow_exceptions=*/false);
  if (bundle.is_discarded()) return Fail(kExitUsage, bundle_path + " is not JSON");
  auto public_key = certs::ParsePublicKey(key_text);
  if (!public_key.ok()) {
    return Fail(kExitUsage, public_key_path + ": " + std::string(public_key.status().message()));
  }
  const certs::BundleVerdict verdict = certs::VerifyBundle(bundle, *public_key, allow_legacy);
  if (json) {
    nlohmann::json out = {
        {"ok", verdict.ok()}, {"errors", verdict.errors}, {"records", nlohmann::json::array()}};
    for (const certs::RecordVerdict& r : verdict.records) {
      out["records"].push_back({{"index", r.index},
                                {"certificate_id", r.certificate_id},
                                {"ok", r.ok()},
                                {"errors", r.errors}});
    }
    std::cout << out.dump() << std::endl;
  } else {
    for (const std::string& e : verdict.errors) std::cout << "bundle: FAIL: " << e << "\n";
    size_t bad = 0;
    for (const certs::RecordVerdict& r : verdict.records) {
      const std::string name = "record " + std::to_string(r.index) + " (" + r.certificate_id + ")";
      if (r.ok()) {
        std::cout << name << ": ok\n";
        continue;
      }
      ++bad;
      for (const std::string& e : r.errors) std::cout << name << ": FAIL: " << e << "\n";
    }
    std::cout << (verdict.ok() ? "OK" : "FAILED") << ": " << verdict.records.size() << " records, "
              << bad << " failing, key " << certs::KeyId(*public_key) << std::endl;
  }
  return verdict.ok() ? kExitOk : kExitVerifyFailed;
}

int CertificateKey(Connection& connection, const std::string& pem_out) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::SigningKey key;
  grpc::Status status =
      connection.erasure().GetSigningKey(&context, v1::GetSigningKeyRequest(), &key);
  if (!status.ok()) return connection.ReportRpcError(status);
  if (!pem_out.empty() && !WriteFile(pem_out, key.public_key_pem())) {
    return Fail(kExitUsage, "cannot write " + pem_out);
  }
  if (connection.options().json) {
    PrintJson(key);
  } else {
    std::cout << "algorithm: " << key.algorithm() << "\nkey_id: " << key.key_id()
              << "\npublic_key_hex: " << key.public_key_hex() << "\n"
              << key.public_key_pem() << std::flush;
  }
  return kExitOk;
}

}  // namespace unlearning::client
