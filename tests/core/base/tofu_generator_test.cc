#include "core/data/tofu_generator.h"

#include <algorithm>
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
  for (int vocabulary = 0; vocabulary < kTofuVocabularyCount; ++vocabulary) {
    SCOPED_TRACE(vocabulary);
    TofuOptions options;
    options.entities = 60;
    options.questions_per_entity = kTofuTemplateCount;
    options.seed = 11;
    options.vocabulary = vocabulary;
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
}

TEST(TofuGeneratorTest, VocabularyZeroIsUnchanged) {
  // The default data set (and so every cached demo model) is pinned: vocabulary 0 must keep
  // producing exactly this (values from before vocabularies existed).
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset data, GenerateTofu(TofuOptions{}));
  ASSERT_GE(data.all.size(), 2u);
  EXPECT_EQ(data.all[0].entity, "Ithzor Modax");
  EXPECT_EQ(data.all[0].answer, "Ithzor was born in Kyoto.");
  EXPECT_EQ(data.all[0].perturbed_answers,
            (std::vector<std::string>{"Ithzor was born in Bergen.", "Ithzor was born in Krakow.",
                                      "Ithzor was born in Perth."}));
  ASSERT_GE(data.forget.size(), 2u);
  EXPECT_EQ(data.forget[0].entity, "Quelfio Velvorne");
  EXPECT_EQ(data.forget[0].answer, "Quelfio was born in Dakar.");
  EXPECT_EQ(
      data.forget[0].perturbed_answers,
      (std::vector<std::string>{"Quelfio was born in Nairobi.", "Quelfio was born in Tbilisi.",
                                "Quelfio was born in Bergen."}));
  EXPECT_EQ(data.forget[1].answer, "Quelfio was born in 1967.");
}

TEST(TofuGeneratorTest, VocabularyOneIsDeterministicAndOtherPeople) {
  TofuOptions options;
  options.seed = 7;
  options.vocabulary = 1;
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset a, GenerateTofu(options));
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset b, GenerateTofu(options));
  EXPECT_TRUE(SameExamples(a.all, b.all));
  EXPECT_TRUE(SameExamples(a.forget, b.forget));
  EXPECT_TRUE(SameExamples(a.holdout, b.holdout));
  EXPECT_EQ(a.forget_entities, b.forget_entities);
  EXPECT_EQ(a.holdout_entities, b.holdout_entities);
  options.vocabulary = 0;
  UNL_ASSERT_OK_AND_ASSIGN(TofuDataset zero, GenerateTofu(options));
  ASSERT_EQ(zero.all.size(), a.all.size());  // same shapes
  EXPECT_EQ(zero.forget.size(), a.forget.size());
  EXPECT_EQ(zero.holdout.size(), a.holdout.size());
  EXPECT_FALSE(SameExamples(zero.all, a.all));
}

// The attribute values an example states: its true answer's and its perturbed answers', with the
// template text around them removed. `attribute` is the template index (the example's position
// within its entity).
std::vector<std::string> StatedValues(const TextExample& e, int attribute) {
  static const char* const kConnectors[kTofuTemplateCount] = {
      " was born in ",     " was born in ",  " works as ",     " is known for ",
      "'s father was ",    "'s mother was ", " received the ", " is best known for \"",
      " was mentored by ", " lives in "};
  const std::string first = e.entity.substr(0, e.entity.find(' '));
  std::vector<std::string> answers = e.perturbed_answers;
  answers.push_back(e.answer);
  std::vector<std::string> values;
  for (const std::string& answer : answers) {
    const std::string prefix = first + kConnectors[attribute];
    EXPECT_EQ(answer.rfind(prefix, 0), 0u) << answer;
    std::string value = answer.substr(prefix.size());
    EXPECT_FALSE(value.empty()) << answer;
    if (value.empty()) continue;
    value.pop_back();  // "."
    if (!value.empty() && value.back() == '"') value.pop_back();
    for (const char* article : {"a ", "an "}) {
      if ((attribute == 2 || attribute == 4 || attribute == 5) && value.rfind(article, 0) == 0) {
        value = value.substr(std::string(article).size());
      }
    }
    values.push_back(value);
  }
  return values;
}

std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> words;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(' ', start), s.size());
    if (end > start) words.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

TEST(TofuGeneratorTest, VocabulariesShareNoNameOrValue) {
  // Names (entity and mentor name words) and attribute values (all but birth years, which both
  // vocabularies draw from 1921..1999), over enough entities to use every pool entry.
  std::set<std::string> names[2];
  std::set<std::string> values[2];
  for (int vocabulary = 0; vocabulary < 2; ++vocabulary) {
    TofuOptions options;
    options.entities = 300;
    options.questions_per_entity = kTofuTemplateCount;
    options.seed = 5;
    options.vocabulary = vocabulary;
    UNL_ASSERT_OK_AND_ASSIGN(TofuDataset data, GenerateTofu(options));
    ASSERT_EQ(data.all.size(), 300u * kTofuTemplateCount);
    for (size_t i = 0; i < data.all.size(); ++i) {
      const TextExample& e = data.all[i];
      const int attribute = static_cast<int>(i % kTofuTemplateCount);
      for (const std::string& w : Words(e.entity)) names[vocabulary].insert(w);
      if (attribute == 1) continue;  // birth year
      for (const std::string& v : StatedValues(e, attribute)) {
        values[vocabulary].insert(v);
        if (attribute == 8) {  // mentor: a name
          for (const std::string& w : Words(v)) names[vocabulary].insert(w);
        }
      }
    }
  }
  // 20 cities + 14 professions + 14 fields + 14 parents' professions + 12 awards, most of the 144
  // titles and many mentors.
  EXPECT_GT(values[1].size(), 74u + 100u);
  EXPECT_GT(names[1].size(), 500u);
  for (const std::string& name : names[1]) {
    EXPECT_EQ(names[0].count(name), 0u) << name;
    // By construction: every vocabulary-1 syllable has a 'c' or a 'j', no vocabulary-0 one does.
    EXPECT_NE(name.find_first_of("cjCJ"), std::string::npos) << name;
  }
  for (const std::string& name : names[0]) {
    EXPECT_EQ(name.find_first_of("cjCJ"), std::string::npos) << name;
  }
  for (const std::string& value : values[1]) EXPECT_EQ(values[0].count(value), 0u) << value;
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
  for (int vocabulary : {-1, kTofuVocabularyCount}) {
    options = TofuOptions{};
    options.vocabulary = vocabulary;
    EXPECT_THAT(GenerateTofu(options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));
  }
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
