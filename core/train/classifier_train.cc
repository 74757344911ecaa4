#include "core/train/classifier_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

// Checks images [N, C, H, W] float32 and labels [N] int64 in [0, num_classes).
absl::Status ValidateData(const LabelledImages& data, const ImageSpec& spec, int64_t num_classes) {
  if (!data.images.defined() || !data.labels.defined()) {
    return absl::InvalidArgumentError("images and labels must be defined");
  }
  if (data.images.dim() != 4 || data.images.size(1) != spec.channels ||
      data.images.size(2) != spec.height || data.images.size(3) != spec.width) {
    return absl::InvalidArgumentError(absl::StrCat("images must be [N, ", spec.channels, ", ",
                                                   spec.height, ", ", spec.width, "], got ",
                                                   c10::str(data.images.sizes())));
  }
  if (data.images.scalar_type() != torch::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat("images must be float32 in [0, 1], got ",
                                                   c10::toString(data.images.scalar_type())));
  }
  if (data.labels.dim() != 1 || data.labels.size(0) != data.images.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat("labels must be [", data.images.size(0),
                                                   "], got ", c10::str(data.labels.sizes())));
  }
  if (data.labels.scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels must be int64, got ", c10::toString(data.labels.scalar_type())));
  }
  if (data.labels.numel() > 0) {
    const int64_t lo = data.labels.min().item<int64_t>();
    const int64_t hi = data.labels.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", lo < 0 ? lo : hi, " outside [0, ", num_classes, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const ClassifierTrainOptions& o) {
  if (o.epochs < 1)
    return absl::InvalidArgumentError(absl::StrCat("epochs must be >= 1, got ", o.epochs));
  if (o.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", o.batch_size));
  }
  if (o.max_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_steps must be >= 0, got ", o.max_steps));
  }
  if (!(o.warmup_epochs >= 0.0) || !std::isfinite(o.warmup_epochs)) {
    return absl::InvalidArgumentError(
        absl::StrCat("warmup_epochs must be >= 0, got ", o.warmup_epochs));
  }
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("label_smoothing must be in [0, 1), got ", o.label_smoothing));
  }
  if (o.random_shift < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("random_shift must be >= 0, got ", o.random_shift));
  }
  if (o.progress_every < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress_every must be >= 1, got ", o.progress_every));
  }
  return absl::OkStatus();
}

// Random translation by up to `shift` pixels and optional mirror, drawn per example.
//   x: [B, C, H, W] -> [B, C, H, W]
torch::Tensor Augment(const torch::Tensor& x, int64_t shift, bool flip, std::mt19937_64& rng) {
  const int64_t b = x.size(0);
  const int64_t h = x.size(2);
  const int64_t w = x.size(3);
  torch::Tensor out = x;
  if (flip) {
    std::vector<uint8_t> mask(static_cast<size_t>(b));
    for (auto& m : mask) m = static_cast<uint8_t>(rng() & 1u);
    torch::Tensor m = torch::tensor(std::vector<int64_t>(mask.begin(), mask.end()))
                          .to(torch::kBool)
                          .view({b, 1, 1, 1});
    out = at::where(m, out.flip({3}), out);
  }
  if (shift > 0) {
    torch::Tensor padded = at::constant_pad_nd(out, {shift, shift, shift, shift}, 0.0);
    std::uniform_int_distribution<int64_t> offset(0, 2 * shift);
    std::vector<torch::Tensor> crops;
    crops.reserve(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
      const int64_t dy = offset(rng);
      const int64_t dx = offset(rng);
      crops.push_back(padded[i].narrow(1, dy, h).narrow(2, dx, w));
    }
    out = at::stack(crops);
  }
  return out;
}

}  // namespace

double ClassifierAccuracy::class_accuracy(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(class_total.size())) return 0.0;
  const int64_t n = class_total[static_cast<size_t>(id)];
  return n == 0 ? 0.0 : static_cast<double>(class_correct[static_cast<size_t>(id)]) / n;
}

absl::StatusOr<ClassifierTrainResult> TrainClassifier(VitClassifier& model,
                                                      const LabelledImages& train,
                                                      const ClassifierTrainOptions& options,
                                                      ProgressSink* progress,
                                                      const CancellationToken* cancel) {
  UNL_RETURN_IF_ERROR(ValidateOptions(options));
  UNL_RETURN_IF_ERROR(TorchCall("checking training data", [&] {
    return ValidateData(train, model.image_spec(), model.num_classes());
  }));
  const int64_t n = train.images.size(0);
  if (n == 0) return absl::InvalidArgumentError("no training examples");
  const int64_t batch = std::min(options.batch_size, n);
  const int64_t steps_per_epoch = n / batch;  // the last partial batch is dropped (reshuffled)
  const int64_t total_steps =
      options.max_steps > 0 ? options.max_steps : options.epochs * steps_per_epoch;

  ViTForImageClassificationImpl& module = *model.module();
  std::vector<torch::Tensor> params;
  for (const torch::Tensor& p : module.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }

  TrainingLoopOptions loop;
  loop.total_steps = total_steps;
  loop.progress_every = options.progress_every;
  loop.optimizer.learning_rate = options.learning_rate;
  loop.optimizer.weight_decay = options.weight_decay;
  loop.optimizer.max_grad_norm = options.max_grad_norm;
  loop.optimizer.warmup_steps = static_cast<int64_t>(std::llround(
      options.warmup_epochs * static_cast<double>(std::min(steps_per_epoch, total_steps))));
  loop.optimizer.cosine_decay = options.cosine_decay;

  const torch::Device device = model.device();
  const torch::Tensor images = train.images.contiguous();  // CPU or device; batches are moved
  const torch::Tensor labels = train.labels.contiguous();
  at::Generator shuffle_gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  std::mt19937_64 augment_rng(options.seed ^ 0x9e3779b97f4a7c15ULL);
  torch::Tensor order;  // [N] int64, this epoch's permutation

  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    const int64_t in_epoch = step % steps_per_epoch;
    if (in_epoch == 0) order = at::randperm(n, shuffle_gen, torch::kInt64);
    torch::Tensor index = order.narrow(0, in_epoch * batch, batch).to(images.device());
    torch::Tensor x = images.index_select(0, index);                      // [B, C, H, W]
    torch::Tensor y = labels.index_select(0, index.to(labels.device()));  // [B]
    if (options.random_shift > 0 || options.horizontal_flip) {
      x = Augment(x, options.random_shift, options.horizontal_flip, augment_rng);
    }
    torch::Tensor logits = module.forward(x.to(device));  // [B, L]
    return at::cross_entropy_loss(logits, y.to(device), /*weight=*/{}, at::Reduction::Mean,
                                  /*ignore_index=*/-100, options.label_smoothing);
  };

  const auto start = std::chrono::steady_clock::now();
  module.train();
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop(params, loop, step_fn, progress, cancel);
  module.eval();
  if (!result.ok()) return result.status();
  ClassifierTrainResult out;
  out.loop = *result;
  out.examples = n;
  out.steps_per_epoch = steps_per_epoch;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

absl::StatusOr<ClassifierAccuracy> EvaluateAccuracy(const ImageClassifier& model,
                                                    const LabelledImages& data,
                                                    int64_t batch_size) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
  }
  const int64_t classes = model.num_classes();
  UNL_RETURN_IF_ERROR(TorchCall("checking evaluation data",
                                [&] { return ValidateData(data, model.image_spec(), classes); }));
  return TorchCall("evaluating accuracy", [&]() -> absl::StatusOr<ClassifierAccuracy> {
    c10::InferenceMode guard;
    const int64_t n = data.images.size(0);
    torch::Tensor correct_per_class = torch::zeros({classes}, torch::kInt64);
    torch::Tensor total_per_class = torch::zeros({classes}, torch::kInt64);
    for (int64_t begin = 0; begin < n; begin += batch_size) {
      const int64_t len = std::min(batch_size, n - begin);
      torch::Tensor y = data.labels.narrow(0, begin, len).cpu();  // [B]
      torch::Tensor pred = model
                               .ClassifyLogits(data.images.narrow(0, begin, len))  // [B, L]
                               .argmax(1)
                               .cpu();
      total_per_class += at::bincount(y, /*weights=*/{}, classes);
      correct_per_class += at::bincount(y.masked_select(pred.eq(y)), /*weights=*/{}, classes);
    }
    ClassifierAccuracy acc;
    for (int64_t c = 0; c < classes; ++c) {
      acc.class_correct.push_back(correct_per_class[c].item<int64_t>());
      acc.class_total.push_back(total_per_class[c].item<int64_t>());
      acc.correct += acc.class_correct.back();
      acc.total += acc.class_total.back();
    }
    return acc;
  });
}

}  // namespace unlearning::core
