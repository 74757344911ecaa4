// The LanguageModel capability of CausalLm: decode states against the full forward, and the one
// token-level decoder (GenerateTokens) against the outputs CausalLm::Generate gave before it was
// moved behind the capability.
#include "core/models/language_model.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "core/common/torch_status.h"
#include "core/models/causal_lm.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// float32 logits of a 2-layer model: the cached and the full forward differ by rounding only
// (observed max |diff| ~1e-7 on logits of magnitude ~0.1).
constexpr double kTolerance = 1e-5;

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

TEST(LanguageModelTest, CausalLmIsItsOwnLanguageModelWithConfigIds) {
  std::unique_ptr<CausalLm> lm = testing::TinyCausalLm(3);
  const Model& model = *lm;
  ASSERT_EQ(model.AsLanguageModel(), static_cast<const LanguageModel*>(lm.get()));
  EXPECT_EQ(model.AsImageClassifier(), nullptr);
  EXPECT_EQ(model.AsImageSampler(), nullptr);
  const LanguageModel& capability = *model.AsLanguageModel();
  EXPECT_EQ(capability.vocab_size(), 259);
  EXPECT_EQ(capability.max_context(), 128);
  EXPECT_EQ(capability.bos_id(), ByteTokenizer::kBos);
  EXPECT_EQ(capability.eos_id(), ByteTokenizer::kEos);
  EXPECT_EQ(capability.pad_id(), ByteTokenizer::kPad);
  EXPECT_EQ(&capability.tokenizer(), &lm->tokenizer());
}

// Prefill of 6 positions, then one token at a time: the last-position logits of every step equal
// the full forward's logits at that position, for both sequences of a batch of 2.
TEST(LanguageModelTest, CausalLmDecodeStateMatchesTheFullForwardAtEveryPosition) {
  std::unique_ptr<CausalLm> lm = testing::TinyCausalLm(5);
  torch::Tensor ids = torch::randint(3, 259, {2, 20}, torch::kInt64);
  ids.select(1, 0).fill_(ByteTokenizer::kBos);
  const torch::Tensor full = lm->Logits(ids);  // [2, 20, 259]
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{2, 20, 259}));
  std::unique_ptr<DecodeState> state = lm->NewDecodeState(2);
  EXPECT_EQ(state->batch_size(), 2);
  EXPECT_EQ(state->length(), 0);
  torch::Tensor step = state->Step(ids.narrow(1, 0, 6));  // [2, V]
  ASSERT_EQ(step.sizes(), (std::vector<int64_t>{2, 259}));
  double worst = MaxAbsDiff(step, full.select(1, 5));
  for (int64_t t = 6; t < 20; ++t) {
    step = state->Step(ids.narrow(1, t, 1));
    const double diff = MaxAbsDiff(step, full.select(1, t));
    EXPECT_LT(diff, kTolerance) << "position " << t;
    worst = std::max(worst, diff);
  }
  EXPECT_LT(worst, kTolerance);
  std::cout << "decode state vs full forward: max |diff| " << worst << " (logits max |x| "
            << full.abs().max().item<double>() << ")\n";
  EXPECT_EQ(state->length(), 20);
  // Two states of one model are independent: a fresh one starts again at position 0.
  std::unique_ptr<DecodeState> other = lm->NewDecodeState(2);
  EXPECT_LT(MaxAbsDiff(other->Step(ids.narrow(1, 0, 1)), full.select(1, 0)), kTolerance);
  EXPECT_EQ(state->length(), 20);
  // A step of the wrong batch size is an error, not a silent broadcast.
  absl::Status wrong = TorchCall("step", [&]() -> absl::Status {
    state->Step(torch::ones({1, 1}, torch::kInt64));
    return absl::OkStatus();
  });
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kInternal, HasSubstr("decode step")));
}

// The ids CausalLm::Generate produced for this tiny LM before decoding moved behind the
// LanguageModel capability (captured at commit 73f0a08 with the same seeds and options).
TEST(LanguageModelTest, GenerateOutputIsUnchangedByTheCapability) {
  std::unique_ptr<CausalLm> lm = testing::TinyCausalLm(7);
  const std::vector<int64_t> prompt = {1, 'H' + 3, 'i' + 3};
  const std::vector<std::vector<int64_t>> before = {
      {138, 135, 172, 112, 241, 5, 241, 5, 241, 116, 6, 139, 209, 161, 156, 241, 5, 241, 116, 6},
      {97, 196, 151, 163, 96, 73, 135, 64, 113, 236, 5, 93, 34, 243, 72, 176, 43, 13, 7, 24},
      {185, 6,   198, 209, 130, 82,  140, 247, 140, 158,
       39,  134, 170, 226, 134, 233, 143, 135, 39,  105},
  };
  for (int mode = 0; mode < 3; ++mode) {
    GenerateOptions options;
    options.max_new_tokens = 20;
    options.stop_at_eos = false;
    options.seed = 123;
    if (mode == 1) options.temperature = 0.8;
    if (mode == 2) {
      options.temperature = 1.3;
      options.top_p = 0.9;
    }
    UNL_ASSERT_OK_AND_ASSIGN(std::vector<int64_t> ids, lm->Generate(prompt, options));
    EXPECT_EQ(ids, before[mode]) << "mode " << mode;
    UNL_ASSERT_OK_AND_ASSIGN(GeneratedTokens tokens, GenerateTokens(*lm, prompt, options, nullptr));
    EXPECT_EQ(tokens.ids, before[mode]) << "mode " << mode;
    EXPECT_EQ(tokens.finish_reason, FinishReason::kMaxTokens);
  }
}

TEST(LanguageModelTest, GenerateTokensReportsWhyItStopped) {
  std::unique_ptr<CausalLm> lm = testing::TinyCausalLm(7);
  const std::vector<int64_t> prompt = {1, 'H' + 3, 'i' + 3};
  GenerateOptions options;
  options.max_new_tokens = 20;
  options.stop_at_eos = false;
  int calls = 0;
  UNL_ASSERT_OK_AND_ASSIGN(
      GeneratedTokens stopped,
      GenerateTokens(*lm, prompt, options, [&](int64_t) { return ++calls < 3; }));
  EXPECT_EQ(stopped.ids.size(), 3u);
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStopped);
  EXPECT_STREQ(FinishReasonName(stopped.finish_reason), "stopped");
  EXPECT_STREQ(FinishReasonName(FinishReason::kEos), "eos");
  EXPECT_STREQ(FinishReasonName(FinishReason::kMaxTokens), "max_tokens");

  CancellationToken cancel;
  cancel.Cancel();
  EXPECT_THAT(GenerateTokens(*lm, prompt, options, nullptr, &cancel),
              StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  options.top_p = 1.5;
  EXPECT_THAT(GenerateTokens(*lm, prompt, options, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p must be in (0, 1]")));
}

}  // namespace
}  // namespace unlearning::core
