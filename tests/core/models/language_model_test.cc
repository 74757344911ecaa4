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

// Left-padded rows decode as they would alone: a prompt of 4 tokens padded to 9 beside a prompt of
// 9 gives, at every step, the logits of its own unpadded decode state.
TEST(LanguageModelTest, PaddedDecodeStateMatchesEachRowDecodedAlone) {
  std::unique_ptr<CausalLm> lm = testing::TinyCausalLm(5);
  torch::Tensor longer = torch::randint(3, 259, {1, 9}, torch::kInt64);
  torch::Tensor shorter = torch::randint(3, 259, {1, 4}, torch::kInt64);
  torch::Tensor ids = torch::full({2, 9}, ByteTokenizer::kPad, torch::kInt64);
  ids[0].copy_(longer[0]);
  ids[1].narrow(0, 5, 4).copy_(shorter[0]);
  torch::Tensor valid = torch::ones({2, 9}, torch::kBool);
  valid[1].narrow(0, 0, 5).fill_(false);
  std::unique_ptr<DecodeState> batch = lm->NewDecodeState(2);
  ASSERT_TRUE(batch->supports_padding());
  std::unique_ptr<DecodeState> alone_long = lm->NewDecodeState(1);
  std::unique_ptr<DecodeState> alone_short = lm->NewDecodeState(1);
  torch::Tensor step = batch->StepPadded(ids, valid);  // [2, V]
  double worst = std::max(MaxAbsDiff(step[0], alone_long->Step(longer)[0]),
                          MaxAbsDiff(step[1], alone_short->Step(shorter)[0]));
  for (int64_t t = 0; t < 6; ++t) {
    torch::Tensor next = torch::randint(3, 259, {2, 1}, torch::kInt64);
    step = batch->Step(next);
    worst = std::max(worst, MaxAbsDiff(step[0], alone_long->Step(next.narrow(0, 0, 1))[0]));
    worst = std::max(worst, MaxAbsDiff(step[1], alone_short->Step(next.narrow(0, 1, 1))[0]));
  }
  EXPECT_LT(worst, kTolerance);
  // Without the mask the padded row reads the pad tokens and its logits move (the test can fail).
  std::unique_ptr<DecodeState> unmasked = lm->NewDecodeState(2);
  std::unique_ptr<DecodeState> fresh_short = lm->NewDecodeState(1);
  EXPECT_GT(MaxAbsDiff(unmasked->Step(ids)[1], fresh_short->Step(shorter)[0]), 100 * kTolerance);
}

// GenerateTokensBatch gives every prompt the ids GenerateTokens gives it alone (greedy and
// sampled), with per-row stops and EOS.
TEST(LanguageModelTest, GenerateTokensBatchMatchesOnePromptAtATime) {
  std::unique_ptr<CausalLm> lm = testing::TinyCausalLm(7);
  const std::vector<std::vector<int64_t>> prompts = {
      {1, 'H' + 3, 'i' + 3},
      {1, 'W' + 3, 'h' + 3, 'e' + 3, 'r' + 3, 'e' + 3, '?' + 3},
      {1, 'A' + 3},
      {1, 'H' + 3, 'o' + 3, 'w' + 3},
  };
  for (double temperature : {0.0, 0.9}) {
    GenerateOptions options;
    options.max_new_tokens = 12;
    options.temperature = temperature;
    options.seed = 11;
    for (int64_t max_batch : {1, 3, 32}) {
      std::vector<int> calls(prompts.size(), 0);
      UNL_ASSERT_OK_AND_ASSIGN(
          std::vector<GeneratedTokens> batch,
          GenerateTokensBatch(
              *lm, prompts, options,
              [&](size_t row, int64_t) { return ++calls[row] < 5 + static_cast<int>(row); },
              nullptr, max_batch));
      ASSERT_EQ(batch.size(), prompts.size());
      for (size_t r = 0; r < prompts.size(); ++r) {
        int alone_calls = 0;
        UNL_ASSERT_OK_AND_ASSIGN(GeneratedTokens alone,
                                 GenerateTokens(*lm, prompts[r], options, [&](int64_t) {
                                   return ++alone_calls < 5 + static_cast<int>(r);
                                 }));
        EXPECT_EQ(batch[r].ids, alone.ids) << "row " << r << " T " << temperature;
        EXPECT_EQ(batch[r].finish_reason, alone.finish_reason) << "row " << r;
      }
      EXPECT_EQ(batch[3].ids.size(), 8u);  // stopped by its callback after 5 + 3 tokens
    }
  }
  GenerateOptions options;
  EXPECT_THAT(GenerateTokensBatch(*lm, {{1, 2}, {}}, options, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt 1: generate: empty")));
  CancellationToken cancel;
  cancel.Cancel();
  EXPECT_THAT(GenerateTokensBatch(*lm, prompts, options, nullptr, &cancel),
              StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

// HiddenStates: layer 0 is the embedding lookup; the last layer, normed and projected by lm_head,
// gives the logits.
TEST(LanguageModelTest, HiddenStatesAreTheResidualStreamBehindTheLogits) {
  std::unique_ptr<CausalLm> lm = testing::TinyCausalLm(5);
  torch::Tensor ids = torch::randint(3, 259, {2, 7}, torch::kInt64);
  const LanguageModel& capability = *lm;
  ASSERT_EQ(capability.num_hidden_layers(), lm->config().num_hidden_layers);
  const std::vector<torch::Tensor> hidden = capability.HiddenStates(ids);
  ASSERT_EQ(static_cast<int64_t>(hidden.size()), capability.num_hidden_layers() + 1);
  EXPECT_LT(MaxAbsDiff(hidden.front(),
                       lm->module()->named_parameters()["model.embed_tokens.weight"].index({ids})),
            kTolerance);
  // Each block changes the stream.
  EXPECT_GT(MaxAbsDiff(hidden[1], hidden[0]), 100 * kTolerance);
  const torch::Tensor& last = hidden.back();
  ASSERT_EQ(last.sizes(), (std::vector<int64_t>{2, 7, lm->config().hidden_size}));
  const double eps = lm->config().rms_norm_eps;
  torch::Tensor normed = last * torch::rsqrt(last.pow(2).mean(-1, true) + eps) *
                         lm->module()->named_parameters()["model.norm.weight"];
  torch::Tensor logits =
      at::linear(normed, lm->module()->named_parameters()["lm_head.weight"]);  // [2, 7, V]
  EXPECT_LT(MaxAbsDiff(logits, lm->Logits(ids)), kTolerance);
}

}  // namespace
}  // namespace unlearning::core
