// The registry's resident set is keyed by content: a version is answered from memory only when
// its manifest's SHA-256 is the one the caller (the journal's record) names, so a copy of other
// bytes under the same model id and version number is never served, and an evicted (purged)
// version is gone.
#include "server/model_registry.h"

#include <memory>

#include <gtest/gtest.h>

namespace unlearning::server {
namespace {

std::shared_ptr<const ServedVersion> Version(int64_t number, const std::string& sha) {
  auto v = std::make_shared<ServedVersion>();
  v->version = number;
  v->manifest_sha256 = sha;
  return v;
}

TEST(ModelRegistryTest, ResidentVersionsAreKeyedByTheirContentHash) {
  ModelRegistry registry;
  auto info = std::make_shared<ServedModelInfo>();
  info->model_id = "m";
  const auto v1 = Version(1, "aa11");
  ASSERT_TRUE(registry.Add(info, v1).ok());
  const auto v2 = Version(2, "bb22");
  registry.CacheResident("m", v2);

  EXPECT_EQ(registry.Resident("m", 1, "aa11"), v1);  // the serving one
  EXPECT_EQ(registry.Resident("m", 2, "bb22"), v2);  // a cached one
  EXPECT_EQ(registry.Resident("m", 2, "cc33"), nullptr) << "same number, other bytes";
  EXPECT_EQ(registry.Resident("m", 1, "bb22"), nullptr);
  EXPECT_EQ(registry.Resident("m", 3, "bb22"), nullptr);
  EXPECT_EQ(registry.Resident("other", 2, "bb22"), nullptr);

  // A copy with other bytes cached under the same number replaces the old copy.
  const auto v2_other = Version(2, "dd44");
  registry.CacheResident("m", v2_other);
  EXPECT_EQ(registry.Resident("m", 2, "dd44"), v2_other);
  EXPECT_EQ(registry.Resident("m", 2, "bb22"), nullptr);

  registry.Evict("m", 2);
  EXPECT_EQ(registry.Resident("m", 2, "dd44"), nullptr);
  EXPECT_EQ(registry.Resident("m", 1, "aa11"), v1) << "evicting never drops the serving version";
}

}  // namespace
}  // namespace unlearning::server
