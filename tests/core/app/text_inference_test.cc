// Generate and Score over the LanguageModel capability: a composite that holds two decode states
// (the shape of ULD's target minus assistant) is served by the same free functions as a CausalLm.
#include "core/app/text_inference.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "core/data/text_example.h"
#include "core/models/causal_lm.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// Decode states and full forwards of float32 2-layer models differ by rounding only (observed
// max |diff| ~1e-7 on logits of magnitude ~0.1).
constexpr double kTolerance = 1e-5;

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Test-only composite: logits_target - alpha * logits_assistant, with the target's tokenizer and
// ids. Its decode state steps one decode state of each inner model.
class LogitDifference : public LanguageModel {
 public:
  LogitDifference(const LanguageModel* target, const LanguageModel* assistant, double alpha)
      : target_(target), assistant_(assistant), alpha_(alpha) {}

  const Tokenizer& tokenizer() const override { return target_->tokenizer(); }
  int64_t bos_id() const override { return target_->bos_id(); }
  int64_t eos_id() const override { return target_->eos_id(); }
  int64_t pad_id() const override { return target_->pad_id(); }
  int64_t vocab_size() const override { return target_->vocab_size(); }
  int64_t max_context() const override {
    return std::min(target_->max_context(), assistant_->max_context());
  }
  torch::Tensor Logits(const torch::Tensor& ids) const override {
    return target_->Logits(ids) - alpha_ * assistant_->Logits(ids);
  }

  class State : public DecodeState {
   public:
    State(std::unique_ptr<DecodeState> target, std::unique_ptr<DecodeState> assistant, double alpha,
          std::atomic<int>* steps)
        : target_(std::move(target)),
          assistant_(std::move(assistant)),
          alpha_(alpha),
          steps_(steps) {}
    torch::Tensor Step(const torch::Tensor& ids) override {
      ++*steps_;
      return target_->Step(ids) - alpha_ * assistant_->Step(ids);
    }
    int64_t length() const override { return target_->length(); }
    int64_t batch_size() const override { return target_->batch_size(); }

   private:
    std::unique_ptr<DecodeState> target_, assistant_;
    double alpha_;
    std::atomic<int>* steps_;
  };

  std::unique_ptr<DecodeState> NewDecodeState(int64_t batch) const override {
    return std::make_unique<State>(target_->NewDecodeState(batch),
                                   assistant_->NewDecodeState(batch), alpha_, &steps);
  }
  mutable std::atomic<int> steps{0};  // Step calls over all its decode states

 private:
  const LanguageModel* target_;
  const LanguageModel* assistant_;
  double alpha_;
};

class TextInferenceTest : public ::testing::Test {
 protected:
  std::unique_ptr<CausalLm> target_ = testing::TinyCausalLm(11);
  std::unique_ptr<CausalLm> assistant_ = testing::TinyCausalLm(12);
  LogitDifference composite_{target_.get(), assistant_.get(), 0.8};
};

// The composite's decode state (prefill of 4, then one token at a time, batch of 2) gives the
// full-sequence logits of the difference at every position.
TEST_F(TextInferenceTest, CompositeDecodeStateMatchesFullSequenceLogits) {
  torch::Tensor ids = torch::randint(3, 259, {2, 16}, torch::kInt64);
  ids.select(1, 0).fill_(ByteTokenizer::kBos);
  const torch::Tensor full = composite_.Logits(ids);  // [2, 16, V]
  // The composite is not its target: the assistant moves the logits.
  EXPECT_GT(MaxAbsDiff(full, target_->Logits(ids)), 100 * kTolerance);
  std::unique_ptr<DecodeState> state = composite_.NewDecodeState(2);
  c10::InferenceMode guard;
  double worst = MaxAbsDiff(state->Step(ids.narrow(1, 0, 4)), full.select(1, 3));
  for (int64_t t = 4; t < 16; ++t) {
    const double diff = MaxAbsDiff(state->Step(ids.narrow(1, t, 1)), full.select(1, t));
    EXPECT_LT(diff, kTolerance) << "position " << t;
    worst = std::max(worst, diff);
  }
  EXPECT_LT(worst, kTolerance);
  std::cout << "composite decode state vs full logits: max |diff| " << worst << " (logits max |x| "
            << full.abs().max().item<double>() << ")\n";
  EXPECT_EQ(state->length(), 16);
}

// Greedy Generate over the composite equals a manual argmax of target - 0.8 * assistant, each
// recomputed from the full sequence; it steps its decode state once per token after the prefill.
TEST_F(TextInferenceTest, GreedyGenerateOnACompositeIsTheArgmaxOfTheDifference) {
  GenerateOptions options;
  options.max_new_tokens = 16;
  options.stop_at_eos = false;
  const TextPrompt prompt{"Who wrote it?", /*qa_format=*/true};
  UNL_ASSERT_OK_AND_ASSIGN(TextGeneration generated,
                           Generate(composite_, prompt, options, nullptr));
  ASSERT_EQ(generated.token_ids.size(), 16u);
  EXPECT_EQ(generated.finish_reason, FinishReason::kMaxTokens);
  EXPECT_EQ(composite_.steps.load(), 16);  // the prefill, then one step per further token

  std::vector<int64_t> seq = {ByteTokenizer::kBos};
  for (int64_t id : ByteTokenizer().Encode(QaPrompt("Who wrote it?"))) seq.push_back(id);
  const size_t prompt_len = seq.size();
  for (int i = 0; i < 16; ++i) {
    const torch::Tensor ids = torch::tensor(seq, torch::kInt64).view({1, -1});
    const torch::Tensor last =
        (target_->Logits(ids) - 0.8 * assistant_->Logits(ids))[0][-1];  // [V]
    seq.push_back(last.argmax().item<int64_t>());
  }
  EXPECT_EQ(generated.token_ids, std::vector<int64_t>(seq.begin() + prompt_len, seq.end()));
  EXPECT_EQ(generated.text, ToValidUtf8(ByteTokenizer().Decode(generated.token_ids)));

  // The target alone answers differently, so the assistant's state really took part.
  UNL_ASSERT_OK_AND_ASSIGN(TextGeneration alone, Generate(*target_, prompt, options, nullptr));
  EXPECT_NE(alone.token_ids, generated.token_ids);
}

// Chunks hold complete characters only; chunks plus the tail give back every id and the text.
TEST_F(TextInferenceTest, GenerateStreamsChunksThatAddUpToTheGeneration) {
  GenerateOptions options;
  options.max_new_tokens = 40;
  options.temperature = 1.0;
  options.seed = 9;
  options.stop_at_eos = false;
  std::string text;
  std::vector<int64_t> ids;
  int chunks = 0;
  UNL_ASSERT_OK_AND_ASSIGN(
      TextGeneration generated,
      Generate(composite_, TextPrompt{"caf\xC3\xA9", false}, options, [&](const TextChunk& c) {
        ++chunks;
        text += c.text;
        ids.insert(ids.end(), c.token_ids.begin(), c.token_ids.end());
        return true;
      }));
  text += generated.tail.text;
  ids.insert(ids.end(), generated.tail.token_ids.begin(), generated.tail.token_ids.end());
  EXPECT_GE(chunks, 1);
  EXPECT_EQ(ids, generated.token_ids);
  EXPECT_EQ(text, generated.text);

  // A sink that says stop ends the generation after its first chunk.
  UNL_ASSERT_OK_AND_ASSIGN(TextGeneration stopped,
                           Generate(composite_, TextPrompt{"x", false}, options,
                                    [](const TextChunk&) { return false; }));
  EXPECT_EQ(stopped.finish_reason, FinishReason::kStopped);
  EXPECT_LT(stopped.token_ids.size(), 40u);
}

// An untrained byte-level model emits bytes that are not UTF-8; every chunk (a protobuf string on
// the wire) must still be valid UTF-8, with U+FFFD where the bytes were not.
TEST_F(TextInferenceTest, GeneratedChunksAreValidUtf8EvenWhenTheModelsBytesAreNot) {
  GenerateOptions options;
  options.max_new_tokens = 120;
  options.temperature = 1.0;
  options.seed = 3;
  options.stop_at_eos = false;
  std::vector<std::string> chunks;
  UNL_ASSERT_OK_AND_ASSIGN(TextGeneration generated, Generate(*target_, TextPrompt{"x", false},
                                                              options, [&](const TextChunk& c) {
                                                                chunks.push_back(c.text);
                                                                return true;
                                                              }));
  std::string raw;
  for (int64_t id : generated.token_ids) raw += target_->tokenizer().Decode({id});
  ASSERT_FALSE(IsValidUtf8(raw)) << "the seed no longer produces invalid bytes; pick another";
  for (const std::string& c : chunks) EXPECT_TRUE(IsValidUtf8(c));
  EXPECT_TRUE(IsValidUtf8(generated.tail.text));
  EXPECT_TRUE(IsValidUtf8(generated.text));
  EXPECT_NE(generated.text.find("\xEF\xBF\xBD"), std::string::npos);
}

TEST_F(TextInferenceTest, GenerateRefusesBadRequestsWithTheServiceMessages) {
  GenerateOptions options;
  auto generate = [&](const std::string& text) {
    return Generate(composite_, TextPrompt{text, false}, options, nullptr);
  };
  EXPECT_THAT(generate(""), StatusIs(absl::StatusCode::kInvalidArgument, "prompt is empty"));
  EXPECT_THAT(generate("bad \xC0\xAF"),
              StatusIs(absl::StatusCode::kInvalidArgument, "prompt is not valid UTF-8"));
  options.max_new_tokens = 0;
  EXPECT_THAT(generate("q"), StatusIs(absl::StatusCode::kInvalidArgument,
                                      "max_tokens must be in [1, 4096], got 0"));
  options.max_new_tokens = 8;
  options.temperature = 11;
  EXPECT_THAT(generate("q"), StatusIs(absl::StatusCode::kInvalidArgument,
                                      "temperature must be in [0, 10], got 11"));
  options.temperature = 0;
  options.top_p = 0;
  EXPECT_THAT(generate("q"),
              StatusIs(absl::StatusCode::kInvalidArgument, "top_p must be in (0, 1], got 0"));
  options.top_p = 1;
  options.max_new_tokens = 120;  // BOS + 10 prompt bytes + 120 > 128
  EXPECT_THAT(generate("0123456789"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "prompt (11 tokens) + max_tokens (120) exceeds the model's context of "
                       "128 tokens"));
  CancellationToken cancel;
  cancel.Cancel();
  options.max_new_tokens = 8;
  EXPECT_THAT(Generate(composite_, TextPrompt{"q", false}, options, nullptr, &cancel),
              StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

// Score's per-token log-probabilities are log_softmax of the composite's full-sequence logits at
// the continuation's tokens; scoring several continuations in one padded batch gives each the
// scores it gets alone.
TEST_F(TextInferenceTest, ScoreIsTheLogSoftmaxOfTheLogitsAndBatchesLikeSingleCalls) {
  const TextPrompt prompt{"Where?", /*qa_format=*/true};
  const std::vector<std::string> continuations = {"Paris", "a much longer answer", "x"};
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<ContinuationScore> scores,
                           Score(composite_, prompt, continuations));
  ASSERT_EQ(scores.size(), 3u);
  std::vector<int64_t> prompt_ids = {ByteTokenizer::kBos};
  for (int64_t id : ByteTokenizer().Encode(QaPrompt("Where?"))) prompt_ids.push_back(id);
  for (size_t i = 0; i < continuations.size(); ++i) {
    std::vector<int64_t> ids = prompt_ids;
    for (int64_t id : ByteTokenizer().Encode(continuations[i])) ids.push_back(id);
    const torch::Tensor logp =
        at::log_softmax(composite_.Logits(torch::tensor(ids).view({1, -1}))[0], -1);  // [T, V]
    const ContinuationScore& s = scores[i];
    ASSERT_EQ(s.num_tokens, static_cast<int64_t>(continuations[i].size()));
    ASSERT_EQ(s.token_log_probs.size(), continuations[i].size());
    double sum = 0.0;
    for (size_t k = 0; k < continuations[i].size(); ++k) {
      const size_t t = prompt_ids.size() + k;
      const double expected = logp[static_cast<int64_t>(t - 1)][ids[t]].item<double>();
      EXPECT_NEAR(s.token_log_probs[k], expected, kTolerance) << i << " " << k;
      EXPECT_LT(s.token_log_probs[k], 0.0);
      sum += s.token_log_probs[k];
    }
    EXPECT_NEAR(s.log_probability, sum, 1e-9);
    EXPECT_NEAR(s.mean_token_probability, std::exp(sum / static_cast<double>(s.num_tokens)), 1e-12);
    UNL_ASSERT_OK_AND_ASSIGN(std::vector<ContinuationScore> alone,
                             Score(composite_, prompt, {continuations[i]}));
    EXPECT_NEAR(alone[0].log_probability, s.log_probability, kTolerance);
  }
}

TEST_F(TextInferenceTest, ScoreRefusesBadRequestsWithTheServiceMessages) {
  const TextPrompt prompt{"q", false};
  EXPECT_THAT(Score(composite_, prompt, {""}),
              StatusIs(absl::StatusCode::kInvalidArgument, "continuation is empty"));
  EXPECT_THAT(Score(composite_, prompt, {"a", ""}),
              StatusIs(absl::StatusCode::kInvalidArgument, "continuations[1] is empty"));
  EXPECT_THAT(Score(composite_, prompt, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no continuation")));
  EXPECT_THAT(
      Score(composite_, prompt, {"\xC0\xAF"}),
      StatusIs(absl::StatusCode::kInvalidArgument, "prompt and continuation must be valid UTF-8"));
  EXPECT_THAT(Score(composite_, prompt, {std::string(127, 'a')}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "prompt + continuation is 129 tokens; the model's context is 128"));
  UNL_EXPECT_OK(Score(composite_, prompt, {std::string(126, 'a')}));
}

}  // namespace
}  // namespace unlearning::core
