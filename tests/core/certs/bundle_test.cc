#include "core/certs/bundle.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "core/certs/ed25519.h"
#include "core/certs/jcs.h"

namespace unlearning::core::certs {
namespace {

// RFC 8032 section 7.1, TEST 1 and TEST 2.
TEST(Ed25519Test, VerifiesRfc8032Vectors) {
  const std::string pub1 =
      *FromHex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const std::string sig1 = *FromHex(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9"
      "b46bd25bf5f0595bbe24655141438e7a100b");
  EXPECT_TRUE(VerifyEd25519(pub1, "", sig1));
  EXPECT_FALSE(VerifyEd25519(pub1, "x", sig1));
  const std::string pub2 =
      *FromHex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
  const std::string sig2 = *FromHex(
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f1"
      "1d8c387b2eaeb4302aeeb00d291612bb0c00");
  EXPECT_TRUE(VerifyEd25519(pub2, std::string(1, '\x72'), sig2));
  EXPECT_FALSE(VerifyEd25519(pub1, std::string(1, '\x72'), sig2));
}

TEST(Ed25519Test, SignVerifyAndPemRoundTrip) {
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok()) << key.status();
  auto sig = key->Sign("hello");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(VerifyEd25519(key->public_key(), "hello", *sig));
  auto again = SigningKey::FromPrivatePem(*key->PrivatePem());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->public_key(), key->public_key());
  EXPECT_EQ(*ParsePublicKey(*PublicKeyPem(key->public_key())), key->public_key());
  EXPECT_EQ(*ParsePublicKey(ToHex(key->public_key()) + "\n"), key->public_key());
  EXPECT_EQ(ParsePublicKey("not a key").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SigningKey::FromPrivatePem("junk").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(key->key_id().size(), 32u);
}

TEST(Ed25519Test, KeyFileIsCreatedPrivateAndReloaded) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("unl_key_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "signing_key.pem").string();
  EXPECT_EQ(LoadOrCreateKeyFile(path, /*create=*/false).status().code(),
            absl::StatusCode::kNotFound);
  auto created = LoadOrCreateKeyFile(path, /*create=*/true);
  ASSERT_TRUE(created.ok()) << created.status();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = LoadOrCreateKeyFile(path, /*create=*/true);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->public_key(), created->public_key());
  ASSERT_TRUE(WritePublicKeyFiles(*loaded, (dir / "signing_key.pub").string()).ok());
  std::ifstream hex(dir / "signing_key.pub.hex");
  std::string line;
  std::getline(hex, line);
  EXPECT_EQ(line, ToHex(created->public_key()));
  ::chmod(path.c_str(), 0644);
  EXPECT_EQ(LoadOrCreateKeyFile(path, true).status().code(), absl::StatusCode::kFailedPrecondition);
  std::filesystem::remove_all(dir);
}

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = std::make_unique<SigningKey>(*SigningKey::Generate());
    std::string previous;
    for (int i = 0; i < 3; ++i) {
      nlohmann::json cert = {{"certificate_id", "cert-" + std::to_string(i)},
                             {"model_id", "m"},
                             {"format", kFormatJcsEd25519V1},
                             {"signing_key_id", key_->key_id()},
                             {"version_after", std::to_string(i + 2)},
                             {"figure", 0.1 * (i + 1)},
                             {"previous_certificate_sha256", previous}};
      auto sealed = Seal(cert, *key_);
      ASSERT_TRUE(sealed.ok()) << sealed.status();
      sealed->kind = "erasure";
      previous = sealed->sha256;
      records_.push_back(*sealed);
    }
    bundle_ = *MakeBundle("m", records_, key_->public_key());
  }

  // The indices of the records that fail.
  std::vector<size_t> Failing(const nlohmann::json& bundle, bool allow_legacy = false) {
    const BundleVerdict v = VerifyBundle(bundle, key_->public_key(), allow_legacy);
    EXPECT_TRUE(v.errors.empty());
    std::vector<size_t> out;
    for (const RecordVerdict& r : v.records) {
      if (!r.ok()) out.push_back(r.index);
    }
    return out;
  }

  std::unique_ptr<SigningKey> key_;
  std::vector<SealedRecord> records_;
  nlohmann::json bundle_;
};

TEST_F(BundleTest, SealedPayloadIsTheCanonicalForm) {
  EXPECT_EQ(records_[0].payload, *CanonicalJson(nlohmann::json::parse(records_[0].payload)));
  EXPECT_EQ(records_[0].sha256, Sha256Hex(records_[0].payload));
  EXPECT_EQ(records_[1].previous_sha256, records_[0].sha256);
  EXPECT_EQ(Seal(nlohmann::json{{"certificate_sha256", "x"}}, *key_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(BundleTest, UntouchedBundleVerifies) {
  const BundleVerdict v = VerifyBundle(bundle_, key_->public_key(), false);
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.records.size(), 3u);
  // A JSON round trip (what a file does) changes nothing.
  EXPECT_TRUE(VerifyBundle(nlohmann::json::parse(bundle_.dump(2)), key_->public_key(), false).ok());
}

TEST_F(BundleTest, EditedFieldIsDetected) {
  nlohmann::json b = bundle_;
  b["records"][1]["certificate"]["version_after"] = "9";
  EXPECT_EQ(Failing(b), std::vector<size_t>{1});
  // Also when the editor recomputes the hash: the signature (and the next link) fail.
  b["records"][1]["sha256"] = Sha256Hex(*CanonicalJson(b["records"][1]["certificate"]));
  EXPECT_EQ(Failing(b), (std::vector<size_t>{1, 2}));
}

TEST_F(BundleTest, DeletedRecordIsDetected) {
  nlohmann::json b = bundle_;
  b["records"].erase(1);
  EXPECT_EQ(Failing(b), std::vector<size_t>{1});  // the old third record, now second
  nlohmann::json first = bundle_;
  first["records"].erase(0);
  EXPECT_EQ(Failing(first), std::vector<size_t>{0});
}

TEST_F(BundleTest, SwappedRecordsAreDetected) {
  nlohmann::json b = bundle_;
  std::swap(b["records"][0], b["records"][1]);
  EXPECT_EQ(Failing(b), (std::vector<size_t>{0, 1, 2}));
}

TEST_F(BundleTest, OtherKeyFailsEveryRecord) {
  auto other = SigningKey::Generate();
  const BundleVerdict v = VerifyBundle(bundle_, other->public_key(), false);
  EXPECT_FALSE(v.ok());
  for (const RecordVerdict& r : v.records) EXPECT_FALSE(r.ok());
}

TEST_F(BundleTest, LegacyRecordsNeedAllowLegacy) {
  SealedRecord legacy;
  legacy.certificate_id = "cert-old";
  legacy.kind = "erasure";
  legacy.format = kFormatLegacy;
  legacy.payload = R"({"certificate_id": "cert-old", "previous_certificate_sha256": ""})";
  legacy.sha256 = Sha256Hex(legacy.payload);
  nlohmann::json next = {{"certificate_id", "cert-new"},
                         {"model_id", "m"},
                         {"format", kFormatJcsEd25519V1},
                         {"signing_key_id", key_->key_id()},
                         {"previous_certificate_sha256", legacy.sha256}};
  SealedRecord sealed = *Seal(next, *key_);
  const nlohmann::json b = *MakeBundle("m", {legacy, sealed}, key_->public_key());
  EXPECT_EQ(Failing(b, /*allow_legacy=*/false), std::vector<size_t>{0});
  EXPECT_TRUE(Failing(b, /*allow_legacy=*/true).empty());
  nlohmann::json edited = b;
  edited["records"][0]["payload_text"] = R"({"certificate_id": "cert-0ld"})";
  EXPECT_EQ(Failing(edited, true), std::vector<size_t>{0});
}

TEST_F(BundleTest, NotABundle) {
  EXPECT_FALSE(VerifyBundle(nlohmann::json::object(), key_->public_key(), false).errors.empty());
  EXPECT_FALSE(VerifyBundle(bundle_, "short", false).errors.empty());
}

}  // namespace
}  // namespace unlearning::core::certs
