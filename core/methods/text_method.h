// The parts shared by the text (causal-LM) unlearning methods: parameter
// parsing with defaults and range checks, seeded batching over the forget set,
// encoding, and the call into the shared training loop. A concrete method
// (FLAT, GA, GD, NPO) supplies its parameters and its per-step loss.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/data/text_example.h"
#include "core/methods/method.h"
#include "core/models/causal_lm.h"
#include "core/train/training_loop.h"

namespace unlearning::core {

// Reads a method's JSON parameters, remembering which keys were consumed, so
// that unknown keys can be rejected. Every error is kInvalidArgument naming
// "<method>.<key>", the value and the allowed range, e.g. "flat.learning_rate
// must be in (0, 1], got 5". Not thread-safe.
class ParamReader {
 public:
  // `params` must be a JSON object or null (= no parameters).
  ParamReader(std::string method, const nlohmann::json& params);

  // kInvalidArgument if the parameters are neither an object nor null.
  absl::Status CheckObject() const;

  // A number in [lo, hi] (bounds exclusive when the matching flag is set), or
  // `def` if absent.
  absl::StatusOr<double> Double(const std::string& key, double def, double lo, double hi,
                                bool lo_exclusive = false, bool hi_exclusive = false);
  // An integer in [lo, hi], or `def` if absent. Integral floats (3.0) are
  // accepted.
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t def, int64_t lo, int64_t hi);
  // A non-negative integer below 2^64, or `def` if absent.
  absl::StatusOr<uint64_t> Uint64(const std::string& key, uint64_t def);
  absl::StatusOr<bool> Bool(const std::string& key, bool def);
  absl::StatusOr<std::string> String(const std::string& key, const std::string& def);

  // kInvalidArgument naming the first key that no accessor consumed.
  absl::Status CheckNoUnknownKeys() const;

  const std::string& method() const { return method_; }

 private:
  // The value of `key`, or nullptr if absent (or JSON null); marks the key as
  // consumed.
  const nlohmann::json* Find(const std::string& key);
  std::string Name(const std::string& key) const;

  std::string method_;
  nlohmann::json params_;
  std::set<std::string> consumed_;
};

// Optimisation settings of the text methods (proto TrainingOptions). Keys are
// at the top level of the method's JSON parameters.
struct TextTrainingOptions {
  double learning_rate = 1e-4;  // (0, 1]
  int64_t epochs = 1;           // [1, 1000]
  int64_t batch_size = 8;       // [1, 1024]
  double weight_decay = 0.01;   // [0, 1]
  double max_grad_norm = 1.0;   // [0, 1e6]; 0 disables clipping
  int64_t max_steps = 0;        // [0, 1e7]; 0 = no bound beyond epochs
  uint64_t seed = 0;
  // Stopping rule (VERIFICATION.md T1): train until the forget set looks like data the model
  // never saw, i.e. mean answer probability on the forget set (the first kStopProbeExamples) <=
  // stop_probability_ratio x the parent's mean on its holdout probes, checked every
  // stop_check_every steps (0 = once per epoch); epochs / max_steps are then the cap. Needs the
  // model's holdout probes.
  bool stop_at_holdout_level = false;
  double stop_probability_ratio = 1.0;  // (0, 10]
  int64_t stop_check_every = 0;         // [0, 1e6]
};

// Forget and holdout examples the stopping rule scores at each check (the first ones).
inline constexpr int64_t kStopProbeExamples = 64;

// Parses the training keys (learning_rate, epochs, batch_size, weight_decay,
// max_grad_norm, max_steps, seed, stop_at_holdout_level, stop_probability_ratio,
// stop_check_every) with the method's default learning rate and epochs.
absl::StatusOr<TextTrainingOptions> ParseTextTrainingOptions(ParamReader& reader,
                                                             double default_learning_rate,
                                                             int64_t default_epochs);
// The training keys with their effective values.
nlohmann::json TextTrainingOptionsToJson(const TextTrainingOptions& options);

// Optimisation steps for `num_forget` forget examples: epochs · ceil(num_forget
// / batch_size), capped at max_steps when that is positive.
int64_t TextTotalSteps(const TextTrainingOptions& options, int64_t num_forget);

// Forget-example indices of every step: each epoch is a fresh seeded
// permutation of [0, num_forget) cut into batches of batch_size (the last batch
// of an epoch may be smaller); truncated to TextTotalSteps. Deterministic in
// (options.seed, num_forget).
std::vector<std::vector<int64_t>> ForgetBatchSchedule(const TextTrainingOptions& options,
                                                      int64_t num_forget);

// Encodes QA examples with EncodeQa (answer + EOS supervised).
std::vector<EncodedExample> EncodeExamples(const Tokenizer& tokenizer,
                                           const std::vector<TextExample>& examples);

// Right-padded batch of the selected encoded examples, on `device`, capped at
// the model's max_position_embeddings.
//   returns input_ids [B, T] int64, labels [B, T] int64 (pre-shifted, -100
//   ignored).
TokenBatch CollateSelected(const CausalLm& model, const std::vector<EncodedExample>& encoded,
                           const std::vector<int64_t>& indices);

// Base class of the text methods. Run() validates the context, finds the parent's target CausalLm
// (the parent itself, or a ULD composite's target), makes the working model (by default a private
// copy of the parent: the full-weights candidate), checks the data, lets the
// method prepare (encode, pair templates, precompute reference figures), builds the seeded
// forget-batch schedule and runs RunTrainingLoop over all model parameters with the method's
// per-step loss.
class TextMethod : public UnlearningMethod {
 public:
  ModelFamily family() const override { return ModelFamily::kCausalLm; }
  // Requires a non-empty forget set whose examples have a question and an
  // answer; subclasses extend it.
  absl::Status CheckData(const ErasureData& data) const override;
  // kFailedPrecondition for a ULD composite parent: a full-weights method would train the target
  // and silently drop what the assistants forget (UldMethod accepts it).
  absl::Status CheckParent(const Model& parent) const override;
  int64_t TotalSteps(const ErasureData& data) const override;
  absl::StatusOr<Candidate> Run(const MethodContext& ctx) override;

  const TextTrainingOptions& training() const { return training_; }

 protected:
  explicit TextMethod(TextTrainingOptions training) : training_(training) {}

  // Called once per Run() before training, outside autograd. `model` is the
  // working copy; `reference` is the frozen parent (never null). `schedule` holds the forget
  // indices of every step (ForgetBatchSchedule).
  virtual absl::Status Prepare(const CausalLm& model, const CausalLm* reference,
                               const ErasureData& data,
                               const std::vector<std::vector<int64_t>>& schedule) = 0;
  // The loss of one step on the forget examples `forget_indices` (indices into
  // data.forget), connected to model's parameters. Returns a float32 scalar.
  virtual absl::StatusOr<torch::Tensor> StepLoss(CausalLm& model, int64_t step,
                                                 const std::vector<int64_t>& forget_indices) = 0;
  // Learning-rate schedule of the method (the loop's OptimizerOptions without
  // lr/wd/clip).
  virtual OptimizerOptions Schedule(int64_t total_steps, int64_t steps_per_epoch) const;
  // The model training changes (its parameters that require grad train). The default is a private
  // full copy of the target (CheckParent has refused composite parents).
  virtual absl::StatusOr<std::unique_ptr<CausalLm>> MakeWorkingModel(const MethodContext& ctx,
                                                                     const CausalLm& target);
  // The model the stopping rule scores: the working model by default (ULD: its composite).
  virtual const LanguageModel& StopProbeModel(const CausalLm& working) const { return working; }
  // The candidate made of the trained working model: the full weights by default.
  virtual absl::StatusOr<Candidate> MakeCandidate(const MethodContext& ctx,
                                                  std::unique_ptr<CausalLm> working);

  TextTrainingOptions training_;
};

// Retain-example indices for each step: one uniformly drawn retain index per
// forget example of the step (TOFU's pairing), from a seeded stream of
// permutations of [0, num_retain). Empty batches if num_retain is 0.
std::vector<std::vector<int64_t>> RetainBatchSchedule(
    const std::vector<std::vector<int64_t>>& forget_schedule, int64_t num_retain, uint64_t seed);

}  // namespace unlearning::core
