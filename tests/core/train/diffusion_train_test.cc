#include "core/train/diffusion_train.h"

#include <chrono>
#include <iostream>
#include <memory>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/models/diffusion.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

std::unique_ptr<DiffusionModel> TinyModel() {
  UNet2DConfig c;
  c.sample_size = 8;
  c.block_out_channels = {8, 16};
  c.norm_num_groups = 4;
  c.num_class_embeds = 3;
  c.null_class_id = 2;
  return DiffusionModel::Create(c, DDPMSchedulerConfig{}, torch::kCPU, /*seed=*/0);
}

// Two classes of 8x8 images: a bright horizontal bar (class 0) or vertical bar (class 1) at a
// random position.
void BarData(torch::Tensor* images, torch::Tensor* labels) {
  const int64_t n = 64;
  *images = torch::zeros({n, 1, 8, 8});
  *labels = torch::zeros({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = 1 + i % 6;
    if (i % 2 == 0) {
      (*images)[i][0][pos].fill_(1.0);
    } else {
      (*images)[i][0].select(1, pos).fill_(1.0);
      (*labels)[i] = 1;
    }
  }
}

// With conv_out initialised to zero the first predictions are 0, so the initial loss is
// E[ε²] ≈ 1; 200 steps on bar images must bring the mean loss of the last 50 steps below 15% of
// the first step's loss and below half the mean of the first 50 steps (measured: 0.054 against
// 1.03 and 0.44).
TEST(DiffusionTrainTest, LossFallsOnSimpleData) {
  std::unique_ptr<DiffusionModel> model = TinyModel();
  torch::Tensor images, labels;
  BarData(&images, &labels);
  DiffusionTrainOptions opts;
  opts.steps = 200;
  opts.batch_size = 32;
  opts.learning_rate = 3e-3;
  opts.warmup_steps = 10;
  const auto start = std::chrono::steady_clock::now();
  UNL_ASSERT_OK_AND_ASSIGN(DiffusionTrainResult result,
                           TrainDiffusion(model.get(), images, labels, opts, nullptr, nullptr));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(result.loop.steps, 200);
  std::cout << "loss: first step " << result.loop.first_loss << ", first 50 mean "
            << result.mean_first_loss << ", last 50 mean " << result.mean_last_loss << "\n";
  EXPECT_GT(result.loop.first_loss, 0.7);
  EXPECT_LT(result.mean_last_loss, 0.15 * result.loop.first_loss);
  EXPECT_LT(result.mean_last_loss, 0.5 * result.mean_first_loss);
  EXPECT_LT(seconds, 30.0);
  EXPECT_FALSE(model->module()->is_training());
}

TEST(DiffusionTrainTest, SameSeedSameWeightsAndEmaDiffersFromRaw) {
  torch::Tensor images, labels;
  BarData(&images, &labels);
  DiffusionTrainOptions opts;
  opts.steps = 20;
  opts.batch_size = 8;
  auto train = [&](double ema) {
    std::unique_ptr<DiffusionModel> model = TinyModel();
    DiffusionTrainOptions o = opts;
    o.ema_decay = ema;
    EXPECT_TRUE(TrainDiffusion(model.get(), images, labels, o, nullptr, nullptr).ok());
    return model->module()->named_parameters()["conv_out.weight"].clone();
  };
  torch::Tensor a = train(0.9);
  torch::Tensor b = train(0.9);
  torch::Tensor raw = train(0.0);
  EXPECT_TRUE(a.equal(b));
  EXPECT_FALSE(a.equal(raw));
}

TEST(DiffusionTrainTest, RejectsBadDataAndOptions) {
  std::unique_ptr<DiffusionModel> model = TinyModel();
  torch::Tensor images, labels;
  BarData(&images, &labels);
  DiffusionTrainOptions opts;
  opts.steps = 1;
  EXPECT_THAT(TrainDiffusion(model.get(), torch::zeros({4, 1, 16, 16}), labels.narrow(0, 0, 4),
                             opts, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ResizeImages")));
  EXPECT_THAT(TrainDiffusion(model.get(), images, labels + 1, opts, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label 2 outside [0, 2)")));
  EXPECT_THAT(TrainDiffusion(model.get(), images, labels.narrow(0, 0, 3), opts, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels")));
  DiffusionTrainOptions bad = opts;
  bad.label_dropout = 1.5;
  EXPECT_THAT(TrainDiffusion(model.get(), images, labels, bad, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label_dropout")));
  bad = opts;
  bad.ema_decay = 1.0;
  EXPECT_THAT(TrainDiffusion(model.get(), images, labels, bad, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ema_decay")));
  bad = opts;
  bad.steps = 0;
  EXPECT_THAT(TrainDiffusion(model.get(), images, labels, bad, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("steps")));
  CancellationToken cancel;
  cancel.Cancel();
  EXPECT_THAT(TrainDiffusion(model.get(), images, labels, opts, nullptr, &cancel),
              StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

TEST(ResizeImagesTest, ResizesAndKeepsIdentity) {
  torch::Tensor x = torch::rand({2, 1, 28, 28});
  EXPECT_TRUE(ResizeImages(x, 28).equal(x));
  torch::Tensor small = ResizeImages(x, 16);
  EXPECT_EQ(small.sizes(), (std::vector<int64_t>{2, 1, 16, 16}));
  EXPECT_NEAR(small.mean().item<double>(), x.mean().item<double>(), 0.02);
}

}  // namespace
}  // namespace unlearning::core
