// Deterministic generator of TOFU-style question/answer data about fictitious
// entities.
//
// Every entity is an invented person whose name is composed from syllables (so
// no pretrained model or public text knows it), with attributes drawn from
// fixed pools: birthplace, birth year, profession, field, parents' professions,
// an award, a signature work, a mentor and a home city. There are
// kTofuVocabularyCount disjoint sets of pools (vocabularies), so two data sets
// can be about entirely different people. Each entity gets K questions from
// fixed templates; each item carries two paraphrased questions and three
// perturbed (wrong) answers built from the same template with other attribute
// values. Entities are split into forget / retain / holdout sets; holdout
// entities are never trained on and serve as the non-member yardstick of
// membership-inference figures.
//
// Determinism: only std::mt19937_64 (whose output sequence the C++ standard
// fixes) and our own integer mappings are used, so a seed yields the same data
// on every platform and compiler.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "core/data/text_example.h"

namespace unlearning::core {

struct TofuOptions {
  int entities = 50;
  int questions_per_entity = 8;   // 1..kTofuTemplateCount
  double forget_fraction = 0.1;   // of entities, rounded, at least 1 entity if > 0
  double holdout_fraction = 0.1;  // of entities, rounded, at least 1 entity if > 0
  uint64_t seed = 0;
  // Which entity vocabulary (pools of name syllables, cities, professions, fields, parents'
  // professions, awards and title words) to draw from, in [0, kTofuVocabularyCount). 0 is the
  // original one; 1 has pools of the same shapes and sizes sharing no name or value with it
  // (birth years excepted: both draw from 1921..1999), so its entities are different people.
  int vocabulary = 0;
};

// Number of entity vocabularies (TofuOptions::vocabulary is in [0, kTofuVocabularyCount)).
inline constexpr int kTofuVocabularyCount = 2;

// Number of question templates (the maximum of questions_per_entity).
inline constexpr int kTofuTemplateCount = 10;

struct TofuDataset {
  std::vector<TextExample> all;      // every entity, in generation order
  std::vector<TextExample> forget;   // examples of forget entities
  std::vector<TextExample> retain;   // examples of retain entities
  std::vector<TextExample> holdout;  // examples of holdout entities (never trained on)
  std::vector<std::string> forget_entities;
  std::vector<std::string> retain_entities;
  std::vector<std::string> holdout_entities;
};

// Generates the data set. kInvalidArgument if entities < 1,
// questions_per_entity is outside [1, kTofuTemplateCount], a fraction is
// outside [0, 1), the vocabulary is outside [0, kTofuVocabularyCount), or the
// split leaves no retain entity. Each example has 2 paraphrased questions and 3
// perturbed answers, all different from the true answer; answers are short
// (about 15-60 bytes). Pure function of `options`.
absl::StatusOr<TofuDataset> GenerateTofu(const TofuOptions& options);

// Portable uniform integer in [0, n) from a 64-bit generator by rejection
// sampling (no std::uniform_int_distribution, whose mapping is
// implementation-defined). n >= 1. Exposed for tests.
template <typename Rng>
uint64_t UniformIndex(Rng& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n);  // multiple of n; values >= limit rejected
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

}  // namespace unlearning::core
