// `unlearnctl certificate verify`: exit codes and per-record output on a bundle sealed here.
#include "client/certificates.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client/exit_codes.h"
#include "core/certs/bundle.h"
#include "core/certs/ed25519.h"

namespace unlearning::client {
namespace {

namespace certs = core::certs;
using ::testing::HasSubstr;

class CertificateVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("unl_cert_verify_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    key_ = std::make_unique<certs::SigningKey>(*certs::SigningKey::Generate());
    std::vector<certs::SealedRecord> records;
    std::string previous;
    for (int i = 0; i < 2; ++i) {
      nlohmann::json cert = {{"certificate_id", "cert-" + std::to_string(i)},
                             {"model_id", "m"},
                             {"format", certs::kFormatJcsEd25519V1},
                             {"signing_key_id", key_->key_id()},
                             {"previous_certificate_sha256", previous}};
      certs::SealedRecord r = *certs::Seal(cert, *key_);
      r.kind = "erasure";
      previous = r.sha256;
      records.push_back(r);
    }
    bundle_ = *certs::MakeBundle("m", records, key_->public_key());
    Write("key.pem", *certs::PublicKeyPem(key_->public_key()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // Runs verify on `bundle`; returns the exit code, stdout in *out.
  int Verify(const nlohmann::json& bundle, std::string* out, bool json = false) {
    const std::string path = Write("bundle.json", bundle.dump(2));
    std::ostringstream captured;
    std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
    const int rc = CertificateVerify(path, (dir_ / "key.pem").string(), false, json);
    std::cout.rdbuf(old);
    *out = captured.str();
    return rc;
  }

  std::filesystem::path dir_;
  std::unique_ptr<certs::SigningKey> key_;
  nlohmann::json bundle_;
};

TEST_F(CertificateVerifyTest, GoodBundleExitsZero) {
  std::string out;
  EXPECT_EQ(Verify(bundle_, &out), kExitOk);
  EXPECT_THAT(out, HasSubstr("record 1 (cert-1): ok"));
  EXPECT_THAT(out, HasSubstr("OK: 2 records, 0 failing"));
}

TEST_F(CertificateVerifyTest, TamperedBundleNamesTheRecordAndExitsEight) {
  nlohmann::json b = bundle_;
  b["records"][1]["certificate"]["model_id"] = "other";
  std::string out;
  EXPECT_EQ(Verify(b, &out), kExitVerifyFailed);
  EXPECT_THAT(out, HasSubstr("record 1 (cert-1): FAIL: hash mismatch"));
  EXPECT_THAT(out, HasSubstr("FAILED: 2 records, 1 failing"));
  EXPECT_EQ(Verify(b, &out, /*json=*/true), kExitVerifyFailed);
  const nlohmann::json doc = nlohmann::json::parse(out);
  EXPECT_FALSE(doc["ok"].get<bool>());
  EXPECT_TRUE(doc["records"][0]["ok"].get<bool>());
  EXPECT_FALSE(doc["records"][1]["ok"].get<bool>());
}

TEST_F(CertificateVerifyTest, UnreadableInputIsAUsageError) {
  EXPECT_EQ(
      CertificateVerify((dir_ / "absent.json").string(), (dir_ / "key.pem").string(), false, false),
      kExitUsage);
  const std::string bundle = Write("b.json", bundle_.dump());
  EXPECT_EQ(CertificateVerify(bundle, Write("junk.key", "junk"), false, false), kExitUsage);
  EXPECT_EQ(
      CertificateVerify(Write("notjson.json", "{"), (dir_ / "key.pem").string(), false, false),
      kExitUsage);
}

}  // namespace
}  // namespace unlearning::client
