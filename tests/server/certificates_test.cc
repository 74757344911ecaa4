// Signed certificates on the toy family: every record of a model's chain (erasures and a forced
// rollback) is sealed in the RFC 8785 canonical form and signed with the server's Ed25519 key; the
// key survives a restart and is published (files and GetSigningKey); an exported chain verifies
// offline; a journal record written before signing keeps loading as a legacy record.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "core/certs/bundle.h"
#include "core/certs/ed25519.h"
#include "core/certs/jcs.h"
#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/toy_family.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

namespace certs = core::certs;
using ::testing::HasSubstr;

class CertificatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = tmp_.Join("toy-src");
    unlearning::testing::WriteToyModel(model_dir_, 1.0);
  }
  void TearDown() override { StopServer(); }

  absl::Status StartServer(const std::string& signing_key_file = "") {
    ServerOptions options;
    options.auth.insecure = true;  // no token file: explicit (docs/security.md)
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "";
    options.data_dir = tmp_.Join("data");
    options.models = {{"toy", model_dir_}};
    options.methods = &registries_.methods;
    options.families = &registries_.families;
    options.purge_grace_seconds = -1;  // keep v1, so a forced rollback can return to it
    options.signing_key_file = signing_key_file;
    auto server = UnlearningServer::Start(options);
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    models_ = v1::ModelService::NewStub(channel);
    erasure_ = v1::ErasureService::NewStub(channel);
    return absl::OkStatus();
  }
  void StopServer() {
    if (server_) server_->Shutdown(absl::Seconds(5));
    server_.reset();
  }

  v1::ErasureEvent Run(const std::string& id, double factor) {
    v1::ErasureRequest r;
    r.set_request_id(id);
    r.set_model_id("toy");
    r.mutable_method()->mutable_named()->set_name("toy_scale");
    r.mutable_method()->mutable_named()->set_params_json("{\"factor\": " + std::to_string(factor) +
                                                         "}");
    r.mutable_classes()->add_forget_classes(3);
    grpc::ClientContext ctx;
    auto stream = erasure_->Erase(&ctx);
    v1::ErasureStreamRequest m;
    *m.mutable_submit() = r;
    EXPECT_TRUE(stream->Write(m));
    stream->WritesDone();
    v1::ErasureEvent e, last;
    while (stream->Read(&e)) last = e;
    EXPECT_TRUE(stream->Finish().ok());
    return last;
  }

  v1::SigningKey Key() {
    grpc::ClientContext ctx;
    v1::SigningKey key;
    EXPECT_TRUE(erasure_->GetSigningKey(&ctx, v1::GetSigningKeyRequest(), &key).ok());
    return key;
  }

  grpc::Status List(const std::string& model_id, v1::ListCertificatesResponse* out) {
    grpc::ClientContext ctx;
    v1::ListCertificatesRequest req;
    req.set_model_id(model_id);
    return erasure_->ListCertificates(&ctx, req, out);
  }

  // The exported bundle of the toy model, as unlearnctl builds it.
  nlohmann::json Bundle() {
    v1::ListCertificatesResponse list;
    EXPECT_TRUE(List("toy", &list).ok());
    std::vector<certs::SealedRecord> records;
    for (const v1::SealedCertificate& c : list.certificates()) {
      records.push_back({c.certificate_id(), c.kind(), c.format(), c.payload(), c.sha256(),
                         c.previous_sha256(), c.signature_ed25519(), c.signing_key_id(),
                         c.created_unix_ms()});
    }
    auto pub = certs::FromHex(list.signing_key().public_key_hex());
    EXPECT_TRUE(pub.ok());
    auto bundle = certs::MakeBundle("toy", records, *pub);
    EXPECT_TRUE(bundle.ok()) << bundle.status();
    return bundle.ok() ? *bundle : nlohmann::json();
  }

  std::string PublicKey() { return *certs::FromHex(Key().public_key_hex()); }

  server::testing::TempDir tmp_;
  unlearning::testing::ToyRegistries registries_;
  std::string model_dir_;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
};

TEST_F(CertificatesTest, EveryRecordIsSignedChainedAndVerifiesOffline) {
  ASSERT_TRUE(StartServer().ok());
  const v1::SigningKey key = Key();
  EXPECT_EQ(key.algorithm(), "ed25519");
  ASSERT_EQ(key.public_key_hex().size(), 64u);
  EXPECT_EQ(*certs::ParsePublicKey(key.public_key_pem()), PublicKey());

  // The key file is private; the public halves are published next to it.
  struct stat st {};
  ASSERT_EQ(::stat(tmp_.Join("data/signing_key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream hex(tmp_.Join("data/signing_key.pub.hex"));
  std::string line;
  std::getline(hex, line);
  EXPECT_EQ(line, key.public_key_hex());

  const v1::ErasureEvent first = Run("c1", 0.5);
  ASSERT_EQ(first.kind(), v1::ErasureEvent::KIND_COMPLETED) << first.message();
  const v1::ErasureEvent second = Run("c2", 0.25);
  ASSERT_EQ(second.kind(), v1::ErasureEvent::KIND_COMPLETED) << second.message();
  // The completion event's certificate is sealed: its signature verifies over the canonical form
  // of its other fields.
  v1::Certificate cert = second.certificate();
  EXPECT_EQ(cert.format(), certs::kFormatJcsEd25519V1);
  EXPECT_EQ(cert.signing_key_id(), key.key_id());
  EXPECT_EQ(cert.previous_certificate_sha256(), first.certificate().certificate_sha256());

  // A forced rollback across both erasures is a record of the chain too.
  {
    grpc::ClientContext ctx;
    v1::RollbackModelRequest req;
    req.set_model_id("toy");
    req.set_version(1);
    req.set_force(true);
    v1::ModelInfo info;
    ASSERT_TRUE(models_->RollbackModel(&ctx, req, &info).ok());
  }

  v1::ListCertificatesResponse list;
  ASSERT_TRUE(List("toy", &list).ok());
  ASSERT_EQ(list.certificates_size(), 3);
  EXPECT_EQ(list.certificates(2).kind(), "forced_rollback");
  for (const v1::SealedCertificate& c : list.certificates()) {
    EXPECT_EQ(c.format(), certs::kFormatJcsEd25519V1);
    EXPECT_EQ(c.payload(), *certs::CanonicalJson(nlohmann::json::parse(c.payload())));
    EXPECT_EQ(c.sha256(), certs::Sha256Hex(c.payload()));
    EXPECT_TRUE(
        certs::VerifyEd25519(PublicKey(), c.payload(), *certs::FromHex(c.signature_ed25519())));
  }
  EXPECT_EQ(list.certificates(1).sha256(), cert.certificate_sha256());
  EXPECT_EQ(list.certificates(1).signature_ed25519(), cert.signature_ed25519());

  const nlohmann::json bundle = Bundle();
  const certs::BundleVerdict verdict = certs::VerifyBundle(bundle, PublicKey(), false);
  EXPECT_TRUE(verdict.ok());
  EXPECT_EQ(verdict.records.size(), 3u);

  // GetCertificate returns the same seal.
  {
    grpc::ClientContext ctx;
    v1::GetCertificateRequest req;
    req.set_job_id(first.job_id());
    v1::Certificate got;
    ASSERT_TRUE(erasure_->GetCertificate(&ctx, req, &got).ok());
    EXPECT_EQ(got.certificate_sha256(), list.certificates(0).sha256());
    EXPECT_EQ(got.signature_ed25519(), list.certificates(0).signature_ed25519());
  }

  // The key survives a restart: the old records still verify and new ones use the same key.
  StopServer();
  ASSERT_TRUE(StartServer().ok());
  EXPECT_EQ(Key().public_key_hex(), key.public_key_hex());
  EXPECT_TRUE(certs::VerifyBundle(Bundle(), PublicKey(), false).ok());

  v1::ListCertificatesResponse unknown;
  EXPECT_EQ(List("nope", &unknown).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(List("", &unknown).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CertificatesTest, SigningKeyFlag) {
  // A missing --signing-key file is an error, not a silently generated key.
  absl::Status missing = StartServer(tmp_.Join("absent.pem"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("absent.pem"));

  auto key = certs::SigningKey::Generate();
  const std::string path = tmp_.Join("given.pem");
  {
    std::ofstream out(path);
    out << *key->PrivatePem();
  }
  ::chmod(path.c_str(), 0644);
  EXPECT_EQ(StartServer(path).code(), absl::StatusCode::kFailedPrecondition);
  ::chmod(path.c_str(), 0600);
  ASSERT_TRUE(StartServer(path).ok());
  EXPECT_EQ(Key().key_id(), key->key_id());
}

// A record written before signing (format '', hash over the protobuf JSON printer's text) keeps
// loading: GetCertificate returns it, the next record links to its hash, and the export marks it
// legacy (the verifier accepts it only with allow_legacy).
TEST_F(CertificatesTest, LegacyRecordsKeepLoading) {
  ASSERT_TRUE(StartServer().ok());
  const v1::ErasureEvent first = Run("l1", 0.5);
  ASSERT_EQ(first.kind(), v1::ErasureEvent::KIND_COMPLETED) << first.message();
  StopServer();

  // Rewrite the record as the previous release stored it.
  const std::string legacy_json =
      "{\"certificate_id\":\"" + first.certificate().certificate_id() +
      "\",\"model_id\":\"toy\",\"job_id\":\"" + first.job_id() +
      "\",\"previous_certificate_sha256\":\"\",\"certificate_sha256\":\"\"}";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(tmp_.Join("data/journal.sqlite").c_str(), &db), SQLITE_OK);
  const std::string sql =
      "UPDATE certificates SET format = '', signature = '', key_id = '', "
      "json = '" +
      legacy_json + "', sha256 = '" + certs::Sha256Hex(legacy_json) + "'";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  ASSERT_TRUE(StartServer().ok());
  {
    grpc::ClientContext ctx;
    v1::GetCertificateRequest req;
    req.set_job_id(first.job_id());
    v1::Certificate got;
    ASSERT_TRUE(erasure_->GetCertificate(&ctx, req, &got).ok());
    EXPECT_EQ(got.format(), "");
    EXPECT_EQ(got.certificate_sha256(), certs::Sha256Hex(legacy_json));
  }
  const v1::ErasureEvent second = Run("l2", 0.25);
  ASSERT_EQ(second.kind(), v1::ErasureEvent::KIND_COMPLETED) << second.message();
  EXPECT_EQ(second.certificate().previous_certificate_sha256(), certs::Sha256Hex(legacy_json));

  const nlohmann::json bundle = Bundle();
  EXPECT_EQ(bundle["records"][0]["format"], certs::kFormatLegacy);
  const certs::BundleVerdict strict = certs::VerifyBundle(bundle, PublicKey(), false);
  ASSERT_EQ(strict.records.size(), 2u);
  EXPECT_FALSE(strict.records[0].ok());
  EXPECT_TRUE(strict.records[1].ok());
  EXPECT_TRUE(certs::VerifyBundle(bundle, PublicKey(), /*allow_legacy=*/true).ok());
}

}  // namespace
}  // namespace unlearning::server
