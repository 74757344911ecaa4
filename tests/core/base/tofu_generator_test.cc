#include "core/data/tofu_generator.h"

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/data/text_example.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

bool SameExamples(const std::vector<TextExample>& a, const std::vector<TextExample>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].question != b[i].question || a[i].answer != b[i].answer ||
        a[i].paraphrased_questions != b[i].paraphrased_questions ||
        a[i].perturbed_answers != b[i].perturbed_answers || a[i].entity != b[i].entity) {
      return false;
    }
  }
  return true;
}

TEST(TofuGeneratorTest, SameSeedSameDataOtherSeedOtherData) {
  TofuOptions options;
  options.seed = 7;
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset a, GenerateTofu(options));
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset b, GenerateTofu(options));
  EXPECT_TRUE(SameExamples(a.all, b.all));
  EXPECT_TRUE(SameExamples(a.forget, b.forget));
  EXPECT_EQ(a.holdout_entities, b.holdout_entities);
  options.seed = 8;
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset c, GenerateTofu(options));
  EXPECT_FALSE(SameExamples(a.all, c.all));
}

TEST(TofuGeneratorTest, ReliesOnlyOnTheStandardFixedGenerator) {
  // Cross-platform determinism rests on std::mt19937_64, whose 10000th output from the default
  // seed is fixed by the C++ standard, plus our own integer mappings (UniformIndex, Fisher-Yates).
  std::mt19937_64 rng;  // default seed 5489
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ull);
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset data, GenerateTofu(TofuOptions{}));
  ASSERT_FALSE(data.all.empty());
  const TextExample& first = data.all.front();
  EXPECT_EQ(first.question, "Where was " + first.entity + " born?");
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset again, GenerateTofu(TofuOptions{}));
  EXPECT_EQ(again.all.front().entity, first.entity);
}

TEST(TofuGeneratorTest, UniformIndexStaysInRangeAndCoversIt) {
  std::mt19937_64 rng(3);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 7000; ++i) {
    const uint64_t k = UniformIndex(rng, 7);
    ASSERT_LT(k, 7u);
    ++counts[k];
  }
  for (int c : counts) EXPECT_GT(c, 800);  // expected 1000 each
  EXPECT_EQ(UniformIndex(rng, 1), 0u);
}

TEST(TofuGeneratorTest, SizesAndDisjointEntitySplits) {
  TofuOptions options;
  options.entities = 50;
  options.questions_per_entity = 8;
  options.forget_fraction = 0.1;
  options.holdout_fraction = 0.2;
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset data, GenerateTofu(options));
  EXPECT_EQ(data.all.size(), 400u);
  EXPECT_EQ(data.forget_entities.size(), 5u);
  EXPECT_EQ(data.holdout_entities.size(), 10u);
  EXPECT_EQ(data.retain_entities.size(), 35u);
  EXPECT_EQ(data.forget.size(), 40u);
  EXPECT_EQ(data.holdout.size(), 80u);
  EXPECT_EQ(data.retain.size(), 280u);
  std::set<std::string> forget(data.forget_entities.begin(), data.forget_entities.end());
  std::set<std::string> retain(data.retain_entities.begin(), data.retain_entities.end());
  std::set<std::string> holdout(data.holdout_entities.begin(), data.holdout_entities.end());
  EXPECT_EQ(forget.size() + retain.size() + holdout.size(),
            50u);  // distinct names
  for (const std::string& name : forget) {
    EXPECT_EQ(retain.count(name), 0u);
    EXPECT_EQ(holdout.count(name), 0u);
  }
  for (const std::string& name : retain) EXPECT_EQ(holdout.count(name), 0u);
  for (const TextExample& e : data.forget) EXPECT_EQ(forget.count(e.entity), 1u);
  for (const TextExample& e : data.retain) EXPECT_EQ(retain.count(e.entity), 1u);
  for (const TextExample& e : data.holdout) EXPECT_EQ(holdout.count(e.entity), 1u);
}

TEST(TofuGeneratorTest, ItemsAreWellFormed) {
  TofuOptions options;
  options.entities = 60;
  options.questions_per_entity = kTofuTemplateCount;
  options.seed = 11;
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset data, GenerateTofu(options));
  std::set<std::string> questions;
  for (const TextExample& e : data.all) {
    EXPECT_TRUE(questions.insert(e.question).second) << "duplicate: " << e.question;
    EXPECT_GE(e.answer.size(), 15u) << e.answer;
    EXPECT_LE(e.answer.size(), 60u) << e.answer;
    EXPECT_TRUE(IsValidUtf8(e.question) && IsValidUtf8(e.answer));
    ASSERT_EQ(e.paraphrased_questions.size(), 2u);
    for (const std::string& p : e.paraphrased_questions) {
      EXPECT_NE(p, e.question);
      EXPECT_THAT(p, HasSubstr(e.entity));
    }
    ASSERT_EQ(e.perturbed_answers.size(), 3u);
    std::set<std::string> wrong(e.perturbed_answers.begin(), e.perturbed_answers.end());
    EXPECT_EQ(wrong.size(), 3u) << e.question;
    EXPECT_EQ(wrong.count(e.answer), 0u) << e.question;
    EXPECT_THAT(e.question, HasSubstr(e.entity));
  }
}

TEST(TofuGeneratorTest, RejectsBadOptions) {
  TofuOptions options;
  options.entities = 0;
  EXPECT_THAT(GenerateTofu(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entities")));
  options = TofuOptions{};
  options.questions_per_entity = kTofuTemplateCount + 1;
  EXPECT_THAT(GenerateTofu(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("questions")));
  options = TofuOptions{};
  options.forget_fraction = 1.0;
  EXPECT_THAT(GenerateTofu(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fractions")));
  options = TofuOptions{};
  options.entities = 2;  // 1 forget + 1 holdout leaves no retain entity
  EXPECT_THAT(GenerateTofu(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no retain")));
}

TEST(TofuGeneratorTest, ZeroHoldoutFraction) {
  TofuOptions options;
  options.entities = 10;
  options.holdout_fraction = 0.0;
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset data, GenerateTofu(options));
  EXPECT_TRUE(data.holdout.empty());
  EXPECT_EQ(data.forget_entities.size(), 1u);
  EXPECT_EQ(data.retain_entities.size(), 9u);
}

}  // namespace
}  // namespace unlearning::core
