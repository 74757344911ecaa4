#include "server/infra/model_store.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "core/common/sha256.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::unlearning::testing::StatusIs;

// A minimal safetensors file: one F32 tensor "w" with `values` (8-byte header length + JSON +
// little-endian data). Written by hand so these tests do not depend on core/io.
std::string TinySafetensors(const std::vector<float>& values) {
  const std::string header = absl::StrCat(R"({"w":{"dtype":"F32","shape":[)", values.size(),
                                          R"(],"data_offsets":[0,)", values.size() * 4, "]}}");
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);  // x86-64: little-endian
  out += header;
  out.append(reinterpret_cast<const char*>(values.data()), values.size() * 4);
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  out.close();
  return out ? absl::OkStatus() : absl::InternalError("write " + path);
}

// A tiny stand-in for a model family: config.json + model.safetensors with a few floats.
class FakeModel : public core::Model {
 public:
  explicit FakeModel(std::vector<float> weights) : weights_(std::move(weights)) {}
  core::ModelFamily family() const override { return core::ModelFamily::kCausalLm; }
  std::string architecture() const override { return "FakeForCausalLM"; }
  int64_t num_parameters() const override { return static_cast<int64_t>(weights_.size()); }
  torch::Device device() const override { return torch::Device(torch::kCPU); }
  absl::Status Save(const std::string& dir) const override {
    if (auto s = WriteFile(
            dir + "/config.json",
            absl::StrCat(R"({"architectures":["FakeForCausalLM"],"n":)", weights_.size(), "}"));
        !s.ok()) {
      return s;
    }
    return WriteFile(dir + "/model.safetensors", TinySafetensors(weights_));
  }
  absl::StatusOr<std::unique_ptr<core::Model>> Clone(torch::Device) const override {
    return std::make_unique<FakeModel>(weights_);
  }
  const std::vector<float>& weights() const { return weights_; }

 private:
  std::vector<float> weights_;
};

// Loads what FakeModel::Save wrote.
absl::StatusOr<std::unique_ptr<core::Model>> LoadFake(const std::string& dir, torch::Device) {
  const std::string st = ReadFile(dir + "/model.safetensors");
  if (st.size() < 8) return absl::NotFoundError("no weights in " + dir);
  uint64_t n = 0;
  std::memcpy(&n, st.data(), 8);
  const size_t data = 8 + n;
  std::vector<float> w((st.size() - data) / 4);
  std::memcpy(w.data(), st.data() + data, w.size() * 4);
  return std::make_unique<FakeModel>(std::move(w));
}

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(ValidateModelIdTest, AcceptsAndRejects) {
  for (const char* ok : {"a", "tiny-lm", "llama3.2_1b", "0model", "m-1.2_x"}) {
    UNL_EXPECT_OK(ValidateModelId(ok)) << ok;
  }
  UNL_EXPECT_OK(ValidateModelId(std::string(64, 'a')));
  for (const char* bad : {"", "Tiny", "-lead", ".hidden", "a/b", "..", "a b", "é"}) {
    EXPECT_THAT(ValidateModelId(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model id")))
        << bad;
  }
  EXPECT_THAT(ValidateModelId(std::string(65, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model id")));
}

class ModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { UNL_ASSERT_OK_AND_ASSIGN(store_, ModelStore::Open(dir_.path())); }

  testing::TempDir dir_;
  std::unique_ptr<ModelStore> store_;
};

TEST_F(ModelStoreTest, SaveWritesVersionDirectoryAtomically) {
  const FakeModel model({1.f, 2.f, 3.f});
  UNL_ASSERT_OK_AND_ASSIGN(std::string dir, store_->Save("tiny-lm", 1, model));
  EXPECT_EQ(dir, dir_.path() + "/models/tiny-lm/v1");
  EXPECT_EQ(dir, store_->VersionDir("tiny-lm", 1));
  EXPECT_THAT(ListNames(dir), ElementsAre("config.json", "manifest.json", "model.safetensors"));
  // No temporary directory is left next to the version.
  EXPECT_THAT(ListNames(dir_.path() + "/models/tiny-lm"), ElementsAre("v1"));

  // The manifest lists every file with its SHA-256, and verifies.
  UNL_ASSERT_OK_AND_ASSIGN(Manifest manifest, ReadManifest(dir, /*verify=*/true));
  EXPECT_EQ(manifest.kind, "full_weights");
  ASSERT_EQ(manifest.files.size(), 2u);
  EXPECT_EQ(manifest.files[1].path, "model.safetensors");
  EXPECT_EQ(manifest.files[1].sha256, core::Sha256Hex(TinySafetensors({1.f, 2.f, 3.f})));
  UNL_ASSERT_OK_AND_ASSIGN(std::string sha, ManifestSha256(dir));
  EXPECT_EQ(sha, core::Sha256Hex(ReadFile(dir + "/manifest.json")));
  EXPECT_THAT(ManifestSha256(dir_.path()).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("manifest.json")));

  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<core::Model> loaded,
                           store_->Load("tiny-lm", 1, torch::Device(torch::kCPU), LoadFake));
  EXPECT_EQ(static_cast<FakeModel&>(*loaded).weights(), std::vector<float>({1.f, 2.f, 3.f}));
}

TEST_F(ModelStoreTest, VersionsAreListedAndRemovable) {
  UNL_ASSERT_OK(store_->Save("m", 1, FakeModel({1.f})).status());
  UNL_ASSERT_OK(store_->Save("m", 3, FakeModel({3.f})).status());
  UNL_ASSERT_OK(store_->Save("m", 10, FakeModel({10.f})).status());
  fs::create_directory(dir_.path() + "/models/m/notes");  // ignored: not v<N>
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<int64_t> versions, store_->ListVersionsOnDisk("m"));
  EXPECT_THAT(versions, ElementsAre(1, 3, 10));
  UNL_ASSERT_OK(store_->RemoveVersion("m", 3));
  UNL_ASSERT_OK(store_->RemoveVersion("m", 3));  // idempotent
  UNL_ASSERT_OK_AND_ASSIGN(versions, store_->ListVersionsOnDisk("m"));
  EXPECT_THAT(versions, ElementsAre(1, 10));
  UNL_ASSERT_OK_AND_ASSIGN(versions, store_->ListVersionsOnDisk("unknown"));
  EXPECT_THAT(versions, IsEmpty());
}

TEST_F(ModelStoreTest, RejectsBadIdsAndVersions) {
  EXPECT_THAT(store_->Save("../evil", 1, FakeModel({1.f})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model id")));
  EXPECT_THAT(store_->Save("m", 0, FakeModel({1.f})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version")));
  EXPECT_THAT(store_->Load("m", 1, torch::Device(torch::kCPU), LoadFake).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("version 1")));
  EXPECT_FALSE(fs::exists(dir_.path() + "/evil"));
}

TEST_F(ModelStoreTest, FailedWriterLeavesNothingBehind) {
  auto failing = [](const std::string& dir) -> absl::Status {
    (void)WriteFile(dir + "/config.json", "{}");
    return absl::ResourceExhaustedError("disk full");
  };
  EXPECT_THAT(store_->SaveWith("m", 1, failing).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("disk full")));
  EXPECT_THAT(ListNames(dir_.path() + "/models/m"), IsEmpty());
}

TEST_F(ModelStoreTest, SaveReplacesAnUnpublishedOrphanVersion) {
  UNL_ASSERT_OK(store_->Save("m", 2, FakeModel({1.f, 1.f})).status());
  UNL_ASSERT_OK_AND_ASSIGN(std::string dir, store_->Save("m", 2, FakeModel({7.f})));
  UNL_ASSERT_OK_AND_ASSIGN(Manifest manifest, ReadManifest(dir, /*verify=*/true));
  EXPECT_EQ(manifest.files[1].sha256, core::Sha256Hex(TinySafetensors({7.f})));
  EXPECT_THAT(ListNames(dir_.path() + "/models/m"), ElementsAre("v2"));
}

TEST_F(ModelStoreTest, ImportCopiesTheTreeWithAManifest) {
  const std::string src = dir_.Join("hf_checkpoint");
  fs::create_directories(src + "/unet");
  UNL_ASSERT_OK(FakeModel({4.f, 5.f}).Save(src));
  UNL_ASSERT_OK(WriteFile(src + "/tokenizer.json", R"({"model":{}})"));
  UNL_ASSERT_OK(WriteFile(src + "/unet/config.json", R"({"x":1})"));
  UNL_ASSERT_OK(WriteFile(src + "/manifest.json", "a user's own file: replaced"));
  UNL_ASSERT_OK_AND_ASSIGN(std::string dir, store_->Import("base", 1, src, "diffusion"));
  EXPECT_THAT(ListNames(dir), ElementsAre("config.json", "manifest.json", "model.safetensors",
                                          "tokenizer.json", "unet"));
  EXPECT_EQ(ReadFile(dir + "/tokenizer.json"), R"({"model":{}})");
  EXPECT_EQ(ReadFile(dir + "/unet/config.json"), R"({"x":1})");
  UNL_ASSERT_OK_AND_ASSIGN(Manifest manifest, ReadManifest(dir, /*verify=*/true));
  EXPECT_EQ(manifest.family, "diffusion");
  std::vector<std::string> paths;
  for (const ManifestFile& f : manifest.files) paths.push_back(f.path);
  EXPECT_THAT(
      paths, ElementsAre("config.json", "model.safetensors", "tokenizer.json", "unet/config.json"));
  EXPECT_THAT(store_->Import("base", 2, dir_.Join("missing")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST_F(ModelStoreTest, ManifestVerificationNamesAChangedMissingOrExtraFile) {
  Manifest header;
  header.kind = "lora_adapter";
  header.parent_version = 1;
  header.facts = {{"rank", 8}};
  UNL_ASSERT_OK_AND_ASSIGN(std::string dir, store_->SaveWith(
                                                "m", 2,
                                                [](const std::string& d) {
                                                  fs::create_directories(d + "/adapters");
                                                  return WriteFile(
                                                      d + "/adapters/block0.safetensors", "abc");
                                                },
                                                header));
  UNL_ASSERT_OK_AND_ASSIGN(Manifest read, ReadManifest(dir, /*verify=*/true));
  EXPECT_EQ(read.kind, "lora_adapter");
  EXPECT_EQ(read.parent_version, 1);
  EXPECT_EQ(read.facts["rank"], 8);
  ASSERT_EQ(read.files.size(), 1u);
  EXPECT_EQ(read.files[0].path, "adapters/block0.safetensors");
  EXPECT_EQ(read.files[0].bytes, 3);

  UNL_ASSERT_OK(WriteFile(dir + "/adapters/block0.safetensors", "abd"));
  EXPECT_THAT(ReadManifest(dir, /*verify=*/true).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("adapters/block0.safetensors does not match")));
  UNL_ASSERT_OK(ReadManifest(dir, /*verify=*/false).status());
  fs::remove(dir + "/adapters/block0.safetensors");
  EXPECT_THAT(ReadManifest(dir, /*verify=*/true).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("is missing")));
  UNL_ASSERT_OK(WriteFile(dir + "/adapters/block0.safetensors", "abc"));
  UNL_ASSERT_OK(WriteFile(dir + "/extra.bin", "x"));
  EXPECT_THAT(ReadManifest(dir, /*verify=*/true).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("extra.bin is not in the manifest")));
  UNL_ASSERT_OK(WriteFile(dir + "/manifest.json", "{\"format\":\"other\"}"));
  EXPECT_THAT(ReadManifest(dir, /*verify=*/false).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("format")));
}

TEST_F(ModelStoreTest, OpenRemovesStaleTemporaryDirectories) {
  UNL_ASSERT_OK(store_->Save("m", 1, FakeModel({1.f})).status());
  const std::string stale = dir_.path() + "/models/m/.tmp-v2-deadbeef";
  fs::create_directories(stale);
  UNL_ASSERT_OK(WriteFile(stale + "/model.safetensors", "partial"));
  store_.reset();
  UNL_ASSERT_OK_AND_ASSIGN(store_, ModelStore::Open(dir_.path()));
  EXPECT_THAT(ListNames(dir_.path() + "/models/m"), ElementsAre("v1"));
  UNL_ASSERT_OK_AND_ASSIGN(int removed, store_->CleanupStaleTemps());
  EXPECT_EQ(removed, 0);
}

// A child process is SIGKILLed while its writer is half-way: no v<N> appears, and the temporary
// directory it left is removed by the next Open().
TEST_F(ModelStoreTest, KillDuringSaveNeverExposesPartialVersion) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    auto store = ModelStore::Open(dir_.path());
    if (!store.ok()) _exit(2);
    (void)(*store)->SaveWith("m", 1, [&](const std::string& dir) -> absl::Status {
      (void)WriteFile(dir + "/config.json", "{}");
      const char ready = 'r';
      if (write(fds[1], &ready, 1) != 1) _exit(3);
      pause();  // killed here
      return absl::OkStatus();
    });
    _exit(4);
  }
  close(fds[1]);
  char c = 0;
  ASSERT_EQ(read(fds[0], &c, 1), 1);
  close(fds[0]);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));

  EXPECT_FALSE(fs::exists(dir_.path() + "/models/m/v1"));
  std::vector<std::string> left = ListNames(dir_.path() + "/models/m");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].rfind(".tmp-v1-", 0), 0u) << left[0];

  UNL_ASSERT_OK_AND_ASSIGN(store_, ModelStore::Open(dir_.path()));
  EXPECT_THAT(ListNames(dir_.path() + "/models/m"), IsEmpty());
  UNL_ASSERT_OK(store_->Save("m", 1, FakeModel({2.f})).status());
}

}  // namespace
}  // namespace unlearning::server
