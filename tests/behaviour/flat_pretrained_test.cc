// Bar (c) of FLAT: the absolute forget-only bar (forget-set answer probability <= 25% of before
// while the retain set keeps >= 80%) on a pre-trained model, the setting FLAT's paper reports.
// The demo LM cannot carry it (it memorises 288 answers and has no language beyond them; see
// text_unlearning_test.cc for the sweep), so this test runs only when given a real model:
//
//   UNL_FLAT_MODEL_DIR  a Hugging Face causal-LM directory (config.json, model.safetensors or a
//                       sharded index, tokenizer.json) fine-tuned on the data below
//   UNL_FLAT_DATA_DIR   forget.jsonl and retain.jsonl in TOFU's question/answer fields
//   UNL_FLAT_PARAMS     optional: FLAT parameters as a JSON object (default: FLAT's defaults)
//
// FLAT runs forget-only (no retain set reaches the method; templates from the built-in pool). A
// 7B model needs a GPU-class machine; without the variables the test is skipped and says why.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/data/text_example.h"
#include "core/methods/method_registry.h"
#include "core/models/causal_lm.h"
#include "core/verify/text_verification.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

double MeanAnswerProbability(const LanguageModel& model, const std::vector<TextExample>& examples) {
  CancellationToken cancel;
  absl::StatusOr<ExampleScores> scores =
      ScoreExamples(model, examples, /*with_rouge=*/false, &cancel);
  if (!scores.ok() || scores->answer_probability.empty()) return -1.0;
  const auto& p = scores->answer_probability;
  return std::accumulate(p.begin(), p.end(), 0.0) / static_cast<double>(p.size());
}

TEST(FlatPretrainedBehaviourTest, ForgetOnlyFlatForgetsAndKeepsRetain) {
  const std::string model_dir = Env("UNL_FLAT_MODEL_DIR");
  const std::string data_dir = Env("UNL_FLAT_DATA_DIR");
  if (model_dir.empty() || data_dir.empty()) {
    GTEST_SKIP() << "FLAT's absolute forget-only bar needs a pre-trained model: set "
                    "UNL_FLAT_MODEL_DIR (a Hugging Face causal-LM directory) and UNL_FLAT_DATA_DIR "
                    "(forget.jsonl, retain.jsonl); optional UNL_FLAT_PARAMS (JSON)";
  }
  const nlohmann::json params = Env("UNL_FLAT_PARAMS").empty()
                                    ? nlohmann::json::object()
                                    : nlohmann::json::parse(Env("UNL_FLAT_PARAMS"));
  ASSERT_FALSE(params.contains("good_answers") && params["good_answers"] != "templates")
      << "bar (c) is the forget-only bar: good_answers must stay \"templates\"";
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<CausalLm> model, CausalLm::Load(model_dir, torch::kCPU));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<TextExample> forget, ReadJsonl(data_dir + "/forget.jsonl"));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<TextExample> retain, ReadJsonl(data_dir + "/retain.jsonl"));
  ASSERT_FALSE(forget.empty());
  ASSERT_FALSE(retain.empty());
  const double forget_before = MeanAnswerProbability(*model, forget);
  const double retain_before = MeanAnswerProbability(*model, retain);
  ASSERT_GT(forget_before, 0.0);
  ASSERT_GT(retain_before, 0.0);

  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> flat,
                           MethodRegistry::Builtin().Create("flat", params));
  ErasureData data;
  data.forget = forget;  // forget-only: no retain set reaches the method
  NullProgressSink progress;
  CancellationToken cancel;
  MethodContext ctx;
  ctx.parent = model.get();
  ctx.data = &data;
  ctx.progress = &progress;
  ctx.cancel = &cancel;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate candidate, flat->Run(ctx));
  const LanguageModel* after = candidate.model->AsLanguageModel();
  ASSERT_NE(after, nullptr);
  const double forget_after = MeanAnswerProbability(*after, forget);
  const double retain_after = MeanAnswerProbability(*after, retain);
  std::printf(
      "[flat, pre-trained %s] %s: forget %.4f -> %.4f (%.1f%%), retain %.4f -> %.4f (%.1f%%)\n",
      model_dir.c_str(), flat->EffectiveParams().dump().c_str(), forget_before, forget_after,
      100.0 * forget_after / forget_before, retain_before, retain_after,
      100.0 * retain_after / retain_before);
  EXPECT_LE(forget_after, 0.25 * forget_before);
  EXPECT_GE(retain_after, 0.80 * retain_before);
}

}  // namespace
}  // namespace unlearning::core
