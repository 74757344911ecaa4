// The data a served model keeps beside its weights (<model dir>/probes/): what verification
// measures on, and what methods may draw replay samples from.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/data/idx.h"
#include "core/data/text_example.h"

namespace unlearning::core {

class Model;

// The probe data a served model keeps for verification, shipped beside its weights
// (<model dir>/probes/). Each family uses its own part; the others stay empty.
struct ModelProbes {
  // Causal LMs: records it knows (used when a request brings no retain set) and records of the
  // same kind it never saw (membership inference).
  std::vector<TextExample> text_retain;
  std::vector<TextExample> text_holdout;
  // Optional (<model dir>/reference/): a model of the same family never trained on some records
  // (e.g. trained on the retain set only) and the questions it never saw (never_trained.jsonl):
  // the yardstick of the T2 figures (TOFU forget quality).
  std::shared_ptr<const Model> text_reference;
  std::set<std::string> text_reference_unseen;
  // Image classifiers: a labelled test split (accuracies, non-member side of MIA) and a sample of
  // the training split (member side of MIA).
  LabelledImages images_test;
  LabelledImages images_train;
  // Class-conditional generators: the classifier that judges samples (an ImageClassifier).
  std::shared_ptr<const Model> judge;
  // SHA-256 (hex) over every probe file and reference/judge model file, in a fixed order: the
  // model's part of the evaluation suite's hash.
  std::string suite_digest;
};

}  // namespace unlearning::core
