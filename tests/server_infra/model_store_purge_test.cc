// ModelStore::PurgeVersionDir: a purged version's files are unlinked and its directory is gone,
// nothing beside it is touched, only version directories of the store are accepted, and a purge
// interrupted by a crash is finished by the next Open().
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/infra/model_store.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

void Write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// A version directory in the layout Import() copies: weights, probes/ and reference/.
absl::StatusOr<std::string> SaveVersion(ModelStore& store, int64_t version) {
  return store.SaveWith("m", version, [](const std::string& dir) -> absl::Status {
    Write(fs::path(dir) / "config.json", "{}");
    Write(fs::path(dir) / "model.safetensors", std::string(70000, 'w'));
    Write(fs::path(dir) / "probes" / "holdout.jsonl", "{}\n");
    Write(fs::path(dir) / "reference" / "never_trained.jsonl", "FORGET-ME\n");
    return absl::OkStatus();
  });
}

TEST(ModelStorePurgeTest, DeletesOnlyTheVersionDirectory) {
  testing::TempDir tmp;
  UNL_ASSERT_OK_AND_ASSIGN(auto store, ModelStore::Open(tmp.path()));
  UNL_ASSERT_OK_AND_ASSIGN(std::string v1, SaveVersion(*store, 1));
  UNL_ASSERT_OK_AND_ASSIGN(std::string v2, SaveVersion(*store, 2));
  // Something of the model that is not a version (e.g. a reference model kept beside them).
  const fs::path beside = fs::path(store->root()) / "m" / "reference" / "config.json";
  Write(beside, "{}");

  UNL_ASSERT_OK_AND_ASSIGN(int64_t files, store->PurgeVersionDir(v1));
  EXPECT_EQ(files, 5);  // 4 written + manifest.json
  EXPECT_FALSE(fs::exists(v1));
  EXPECT_TRUE(fs::exists(fs::path(v2) / "model.safetensors"));
  EXPECT_TRUE(fs::exists(fs::path(v2) / "reference" / "never_trained.jsonl"));
  EXPECT_TRUE(fs::exists(beside));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<int64_t> on_disk, store->ListVersionsOnDisk("m"));
  EXPECT_THAT(on_disk, ElementsAre(2));
  // No leftover of the purge next to the versions.
  for (const auto& entry : fs::directory_iterator(fs::path(store->root()) / "m")) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr("purge")));
  }
  // Idempotent.
  UNL_ASSERT_OK_AND_ASSIGN(int64_t again, store->PurgeVersionDir(v1));
  EXPECT_EQ(again, 0);
}

TEST(ModelStorePurgeTest, RefusesWhatIsNotAVersionDirectoryOfTheStore) {
  testing::TempDir tmp;
  UNL_ASSERT_OK_AND_ASSIGN(auto store, ModelStore::Open(tmp.path()));
  UNL_ASSERT_OK(SaveVersion(*store, 1).status());
  const fs::path model_dir = fs::path(store->root()) / "m";
  Write(model_dir / "reference" / "config.json", "{}");
  for (const fs::path& bad : {model_dir / "reference", model_dir, fs::path(store->root()),
                              fs::path(tmp.path()) / "elsewhere" / "m" / "v1"}) {
    EXPECT_THAT(store->PurgeVersionDir(bad.string()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a version")))
        << bad;
  }
  EXPECT_TRUE(fs::exists(model_dir / "reference" / "config.json"));
  EXPECT_TRUE(fs::exists(model_dir / "v1" / "config.json"));
}

TEST(ModelStorePurgeTest, OpenFinishesAPurgeACrashInterrupted) {
  testing::TempDir tmp;
  {
    UNL_ASSERT_OK_AND_ASSIGN(auto store, ModelStore::Open(tmp.path()));
    UNL_ASSERT_OK(SaveVersion(*store, 1).status());
  }
  // What a crash right after the rename leaves behind.
  const fs::path model_dir = fs::path(tmp.path()) / "models" / "m";
  fs::rename(model_dir / "v1", model_dir / ".purge-v1-0123456789abcdef");
  UNL_ASSERT_OK_AND_ASSIGN(auto store, ModelStore::Open(tmp.path()));
  EXPECT_TRUE(fs::is_empty(model_dir));
}

}  // namespace
}  // namespace unlearning::server
