#include "core/train/finetune.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "core/text/tokenizer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

std::unique_ptr<CausalLm> TinyModel(uint64_t seed = 0) {
  return ::unlearning::testing::TinyCausalLm(seed, /*hidden_size=*/64);
}

std::vector<TextExample> TenFacts() {
  const std::vector<std::pair<std::string, std::string>> facts = {
      {"Ana", "Lima"}, {"Bo", "Oslo"},  {"Cy", "Rome"},  {"Di", "Nice"},  {"Ed", "Kyiv"},
      {"Flo", "Bern"}, {"Gus", "Riga"}, {"Hal", "Baku"}, {"Ivy", "Doha"}, {"Jo", "Pune"}};
  std::vector<TextExample> examples;
  for (const auto& [who, where] : facts) {
    TextExample ex;
    ex.question = absl::StrCat("Where is ", who, "?");
    ex.answer = where;
    ex.entity = who;
    examples.push_back(ex);
  }
  return examples;
}

FinetuneOptions FastOptions() {
  FinetuneOptions options;
  options.epochs = 60;
  options.batch_size = 5;
  options.learning_rate = 3e-3;
  options.warmup_epochs = 2;
  options.seed = 1;
  return options;
}

TEST(FinetuneTest, TinyModelMemorisesTenQaPairs) {
  torch::manual_seed(0);
  std::unique_ptr<CausalLm> model = TinyModel();
  const std::vector<TextExample> data = TenFacts();
  UNL_ASSERT_OK_AND_ASSIGN(TokenAccuracy before, MeasureAnswerAccuracy(*model, data));
  // Every answer is 4 bytes, + EOS.
  EXPECT_EQ(before.total, 10 * (4 + 1));
  EXPECT_LT(before.accuracy(), 0.3);

  UNL_ASSERT_OK_AND_ASSIGN(FinetuneResult result,
                           FinetuneQa(*model, data, FastOptions(), nullptr, nullptr));
  EXPECT_EQ(result.steps_per_epoch, 2);
  EXPECT_EQ(result.loop.steps, 120);
  EXPECT_LT(result.loop.last_loss, 0.2 * result.loop.first_loss);
  UNL_ASSERT_OK_AND_ASSIGN(TokenAccuracy after, MeasureAnswerAccuracy(*model, data));
  EXPECT_EQ(after.total, before.total);
  EXPECT_GE(after.accuracy(), 0.95);
}

TEST(FinetuneTest, SameSeedSameResult) {
  FinetuneOptions options = FastOptions();
  options.epochs = 3;
  std::vector<double> losses;
  for (int run = 0; run < 2; ++run) {
    std::unique_ptr<CausalLm> model = TinyModel(/*seed=*/3);
    UNL_ASSERT_OK_AND_ASSIGN(FinetuneResult result,
                             FinetuneQa(*model, TenFacts(), options, nullptr, nullptr));
    losses.push_back(result.loop.last_loss);
  }
  EXPECT_EQ(losses[0], losses[1]);
}

TEST(FinetuneTest, CancellationStopsTraining) {
  std::unique_ptr<CausalLm> model = TinyModel();
  CancellationToken cancel;
  cancel.Cancel();
  EXPECT_THAT(FinetuneQa(*model, TenFacts(), FastOptions(), nullptr, &cancel),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("before step 0")));
}

TEST(FinetuneTest, RejectsEmptyDataAndBadOptions) {
  std::unique_ptr<CausalLm> model = TinyModel();
  EXPECT_THAT(FinetuneQa(*model, {}, FastOptions(), nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no training examples")));
  FinetuneOptions bad = FastOptions();
  bad.batch_size = 0;
  EXPECT_THAT(FinetuneQa(*model, TenFacts(), bad, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch_size")));
  EXPECT_THAT(MeasureAnswerAccuracy(*model, TenFacts(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch_size")));
}

// logits [1, 4, 3] with argmax (2, 0, 1, 1) per position.
torch::Tensor HandLogits() {
  return torch::tensor({{{0.f, 1.f, 5.f}, {3.f, 1.f, 0.f}, {0.f, 2.f, 1.f}, {0.f, 9.f, 1.f}}});
}

TEST(AnswerAccuracyTest, CountsOnlySupervisedPositions) {
  // Position 0 is prompt (ignored) though its argmax would match; 1: hit; 2: miss; 3: hit.
  const torch::Tensor labels = torch::tensor({{2L, 0L, 2L, 1L}});
  const torch::Tensor masked = torch::tensor({{kIgnoreIndex, 0L, 2L, 1L}});
  UNL_ASSERT_OK_AND_ASSIGN(TokenAccuracy all, CountCorrectTokens(HandLogits(), labels));
  EXPECT_EQ(all.correct, 3);
  EXPECT_EQ(all.total, 4);
  UNL_ASSERT_OK_AND_ASSIGN(TokenAccuracy acc, CountCorrectTokens(HandLogits(), masked));
  EXPECT_EQ(acc.correct, 2);
  EXPECT_EQ(acc.total, 3);
  EXPECT_DOUBLE_EQ(acc.accuracy(), 2.0 / 3.0);

  const torch::Tensor none = torch::full({1, 4}, kIgnoreIndex, torch::kInt64);
  UNL_ASSERT_OK_AND_ASSIGN(TokenAccuracy empty, CountCorrectTokens(HandLogits(), none));
  EXPECT_EQ(empty.total, 0);
  EXPECT_EQ(empty.accuracy(), 0.0);
}

TEST(AnswerAccuracyTest, RejectsShapeMismatch) {
  EXPECT_THAT(CountCorrectTokens(HandLogits(), torch::zeros({1, 3}, torch::kInt64)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[B, T, V]")));
  EXPECT_THAT(CountCorrectTokens(torch::zeros({4, 3}), torch::zeros({1, 4}, torch::kInt64)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[B, T, V]")));
}

TEST(AnswerCrossEntropyTest, AveragesOverAnswerTokensOnly) {
  const torch::Tensor logits = HandLogits();
  const torch::Tensor labels = torch::tensor({{kIgnoreIndex, 0L, 2L, kIgnoreIndex}});
  const torch::Tensor log_probs = logits.log_softmax(-1);
  const double expected =
      -(log_probs[0][1][0].item<double>() + log_probs[0][2][2].item<double>()) / 2.0;
  EXPECT_NEAR(AnswerCrossEntropy(logits, labels).item<double>(), expected, 1e-6);
}

}  // namespace
}  // namespace unlearning::core
