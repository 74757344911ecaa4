#include "core/train/classifier_train.h"

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "core/data/idx.h"
#include "core/models/vit.h"
#include "core/train/lr_schedule.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

ViTConfig SmallConfig(std::vector<std::string> labels) {
  ViTConfig c;
  c.patch_size = 7;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 64;
  c.id2label = std::move(labels);
  return c;
}

// The examples of classes `a` and `b` (relabelled 0 and 1), at most `limit` of them.
LabelledImages TwoClasses(const LabelledImages& data, int64_t a, int64_t b, int64_t limit) {
  torch::Tensor keep = (data.labels == a).logical_or(data.labels == b).nonzero().view(-1);
  keep = keep.narrow(0, 0, std::min<int64_t>(limit, keep.size(0)));
  LabelledImages out;
  out.images = data.images.index_select(0, keep);
  out.labels = (data.labels.index_select(0, keep) == b).to(torch::kInt64);
  return out;
}

// Few hundred steps on a 2-class subset (Shirt vs Sneaker would be too easy; T-shirt/top vs
// Pullover is a hard pair) must reach 90% held-out accuracy (95% measured), from ~50% at
// initialisation.
TEST(TrainClassifierTest, LearnsTwoFashionMnistClasses) {
  absl::StatusOr<LabelledImages> train = LoadFashionMnist("train");
  absl::StatusOr<LabelledImages> test = LoadFashionMnist("test");
  if (absl::IsNotFound(train.status())) GTEST_SKIP() << train.status();
  ASSERT_TRUE(train.ok() && test.ok()) << train.status() << test.status();
  at::set_num_threads(1);
  const LabelledImages train2 = TwoClasses(*train, /*a=*/0, /*b=*/2, /*limit=*/4000);
  const LabelledImages test2 = TwoClasses(*test, /*a=*/0, /*b=*/2, /*limit=*/2000);
  auto model = VitClassifier::Create(SmallConfig({"T-shirt/top", "Pullover"}), torch::kCPU, 0);
  ASSERT_TRUE(model.ok());

  absl::StatusOr<ClassifierAccuracy> before = EvaluateAccuracy(**model, test2);
  ASSERT_TRUE(before.ok()) << before.status();
  ClassifierTrainOptions options;
  options.batch_size = 32;
  options.max_steps = 300;
  options.learning_rate = 2e-3;
  options.warmup_epochs = 0.2;
  options.label_smoothing = 0.1;
  options.random_shift = 1;
  options.horizontal_flip = true;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ClassifierTrainResult> result =
      TrainClassifier(**model, train2, options, nullptr, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  absl::StatusOr<ClassifierAccuracy> after = EvaluateAccuracy(**model, test2);
  ASSERT_TRUE(after.ok()) << after.status();
  std::cout << "accuracy " << before->accuracy() << " -> " << after->accuracy() << " in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << " s (" << result->loop.steps << " steps)\n";
  EXPECT_EQ(result->loop.steps, 300);
  EXPECT_LT(result->loop.last_loss, result->loop.first_loss);
  EXPECT_GE(after->accuracy(), 0.90);
  EXPECT_GE(after->class_accuracy(0), 0.7);
  EXPECT_GE(after->class_accuracy(1), 0.7);
  EXPECT_EQ(after->total, test2.labels.size(0));
}

// Synthetic data: class = whether the left half is brighter than the right half.
LabelledImages HalvesData(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  LabelledImages d;
  d.labels = torch::randint(0, 2, {n}, torch::kInt64);
  d.images = torch::rand({n, 1, 28, 28}) * 0.5;
  torch::Tensor left = d.labels.to(torch::kBool).view({n, 1, 1, 1});
  d.images.narrow(3, 0, 14).add_(left.to(torch::kFloat32) * 0.5);
  d.images.narrow(3, 14, 14).add_(left.logical_not().to(torch::kFloat32) * 0.5);
  return d;
}

TEST(TrainClassifierTest, IsDeterministicForASeed) {
  at::set_num_threads(1);
  const LabelledImages data = HalvesData(64, 1);
  ClassifierTrainOptions options;
  options.batch_size = 16;
  options.max_steps = 5;
  options.random_shift = 2;
  options.horizontal_flip = true;
  std::vector<torch::Tensor> outputs;
  for (int run = 0; run < 2; ++run) {
    auto model = VitClassifier::Create(SmallConfig({"right", "left"}), torch::kCPU, 0);
    ASSERT_TRUE(model.ok());
    ASSERT_TRUE(TrainClassifier(**model, data, options, nullptr, nullptr).ok());
    outputs.push_back((*model)->ClassifyLogits(data.images));
  }
  EXPECT_TRUE(torch::equal(outputs[0], outputs[1]));
}

class CountingSink : public ProgressSink {
 public:
  void OnProgress(const ProgressUpdate& u) override { steps.push_back(u.step); }
  std::vector<int64_t> steps;
};

TEST(TrainClassifierTest, ReportsProgressAndStopsWhenCancelled) {
  const LabelledImages data = HalvesData(32, 2);
  auto model = VitClassifier::Create(SmallConfig({"right", "left"}), torch::kCPU, 0);
  ASSERT_TRUE(model.ok());
  ClassifierTrainOptions options;
  options.batch_size = 8;
  options.epochs = 2;  // 4 steps per epoch
  options.progress_every = 3;
  CountingSink sink;
  absl::StatusOr<ClassifierTrainResult> result =
      TrainClassifier(**model, data, options, &sink, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps_per_epoch, 4);
  EXPECT_THAT(sink.steps, ::testing::ElementsAre(3, 6, 8));

  CancellationToken cancel;
  cancel.Cancel();
  EXPECT_THAT(TrainClassifier(**model, data, options, nullptr, &cancel).status(),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
}

TEST(TrainClassifierTest, RejectsBadDataAndOptions) {
  auto model = VitClassifier::Create(SmallConfig({"right", "left"}), torch::kCPU, 0);
  ASSERT_TRUE(model.ok());
  LabelledImages data = HalvesData(8, 3);
  ClassifierTrainOptions options;
  LabelledImages bad_label = data;
  bad_label.labels = data.labels.clone();
  bad_label.labels[0] = 2;
  EXPECT_THAT(TrainClassifier(**model, bad_label, options, nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label 2 outside [0, 2)")));
  LabelledImages bad_shape = data;
  bad_shape.images = torch::rand({8, 1, 32, 32});
  EXPECT_THAT(TrainClassifier(**model, bad_shape, options, nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[N, 1, 28, 28]")));
  EXPECT_THAT(EvaluateAccuracy(**model, bad_shape).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[N, 1, 28, 28]")));
  options.label_smoothing = 1.0;
  EXPECT_THAT(TrainClassifier(**model, data, options, nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label_smoothing")));
}

TEST(EvaluateAccuracyTest, CountsPerClass) {
  auto model = VitClassifier::Create(SmallConfig({"a", "b", "c"}), torch::kCPU, 0);
  ASSERT_TRUE(model.ok());
  LabelledImages data;
  data.images = torch::rand({7, 1, 28, 28});
  const torch::Tensor pred = (*model)->ClassifyLogits(data.images).argmax(1);
  // Labels equal to the predictions except for examples 0 and 1.
  data.labels = pred.clone();
  data.labels[0] = (pred[0].item<int64_t>() + 1) % 3;
  data.labels[1] = (pred[1].item<int64_t>() + 2) % 3;
  absl::StatusOr<ClassifierAccuracy> acc = EvaluateAccuracy(**model, data, /*batch_size=*/3);
  ASSERT_TRUE(acc.ok()) << acc.status();
  EXPECT_EQ(acc->correct, 5);
  EXPECT_EQ(acc->total, 7);
  int64_t sum_total = 0;
  int64_t sum_correct = 0;
  for (int64_t c = 0; c < 3; ++c) {
    sum_total += acc->class_total[c];
    sum_correct += acc->class_correct[c];
    EXPECT_EQ(acc->class_total[c], (data.labels == c).sum().item<int64_t>());
  }
  EXPECT_EQ(sum_total, 7);
  EXPECT_EQ(sum_correct, 5);
}

TEST(LearningRateAtTest, CosineDecayAfterWarmup) {
  OptimizerOptions opt;
  opt.learning_rate = 1.0;
  opt.warmup_steps = 2;
  opt.cosine_decay = true;
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 0, 12), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 2, 12), 1.0);
  EXPECT_NEAR(LearningRateAt(opt, 7, 12), 0.5, 1e-12);  // halfway through the 10 decay steps
  EXPECT_GT(LearningRateAt(opt, 11, 12), 0.0);
  EXPECT_LT(LearningRateAt(opt, 11, 12), 0.03);
  opt.linear_decay = true;  // cosine wins
  EXPECT_NEAR(LearningRateAt(opt, 7, 12), 0.5, 1e-12);
  EXPECT_NEAR(LearningRateAt(opt, 4, 12), 0.5 * (1 + std::cos(M_PI * 0.2)), 1e-12);
}

}  // namespace
}  // namespace unlearning::core
