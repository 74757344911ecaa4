// The one token-level decoder over the LanguageModel capability.
#include "core/models/language_model.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

// Draws u in [0, 1) from 53 random bits (portable, unlike std::uniform_real_distribution).
double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

//   logits: [V] float32. Greedy argmax when temperature == 0, else nucleus sampling.
int64_t PickToken(const torch::Tensor& logits, const GenerateOptions& options,
                  std::mt19937_64& rng) {
  if (options.temperature <= 0.0) return logits.argmax().item<int64_t>();
  torch::Tensor probs =
      at::softmax(logits.to(torch::kCPU, torch::kFloat64) / options.temperature, -1).contiguous();
  const double* p = probs.data_ptr<double>();
  const int64_t v = probs.numel();
  std::vector<int64_t> order(v);
  for (int64_t i = 0; i < v; ++i) order[i] = i;
  // Descending probability; ties by id so the order is deterministic.
  std::sort(order.begin(), order.end(),
            [p](int64_t a, int64_t b) { return p[a] != p[b] ? p[a] > p[b] : a < b; });
  // Nucleus: the smallest prefix whose mass reaches top_p (always at least one token).
  double kept_mass = 0.0;
  int64_t kept = 0;
  while (kept < v && (kept == 0 || kept_mass < options.top_p)) kept_mass += p[order[kept++]];
  const double u = Uniform01(rng) * kept_mass;
  double acc = 0.0;
  for (int64_t i = 0; i < kept; ++i) {
    acc += p[order[i]];
    if (u < acc) return order[i];
  }
  return order[kept - 1];
}

}  // namespace

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kMaxTokens:
      return "max_tokens";
    case FinishReason::kStopped:
      return "stopped";
  }
  return "unknown";
}

absl::StatusOr<GeneratedTokens> GenerateTokens(const LanguageModel& lm,
                                               const std::vector<int64_t>& prompt_ids,
                                               const GenerateOptions& options,
                                               const std::function<bool(int64_t)>& on_token,
                                               const CancellationToken* cancel) {
  const int64_t vocab = lm.vocab_size();
  if (prompt_ids.empty()) return absl::InvalidArgumentError("generate: empty prompt");
  for (int64_t id : prompt_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("generate: prompt token ", id, " outside [0, ", vocab, ")"));
    }
  }
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 0, got ", options.max_new_tokens));
  }
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0, got ", options.temperature));
  }
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", options.top_p));
  }
  auto cancelled = [cancel] { return cancel != nullptr && cancel->cancelled(); };
  return TorchCall("generate", [&]() -> absl::StatusOr<GeneratedTokens> {
    c10::InferenceMode guard;
    GeneratedTokens out;
    if (options.max_new_tokens == 0) return out;
    if (cancelled()) return absl::CancelledError("generation cancelled");
    std::mt19937_64 rng(options.seed);
    std::unique_ptr<DecodeState> state = lm.NewDecodeState(1);
    torch::Tensor logits = state->Step(torch::tensor(prompt_ids, torch::kInt64).view({1, -1}))[0];
    const int64_t eos = lm.eos_id();
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      const int64_t next = PickToken(logits, options, rng);
      if (options.stop_at_eos && next == eos) {
        out.finish_reason = FinishReason::kEos;
        return out;
      }
      out.ids.push_back(next);
      if (on_token && !on_token(next)) {
        out.finish_reason = FinishReason::kStopped;
        return out;
      }
      if (step + 1 == options.max_new_tokens) break;
      if (cancelled()) return absl::CancelledError("generation cancelled");
      logits = state->Step(torch::full({1, 1}, next, torch::kInt64))[0];
    }
    out.finish_reason = FinishReason::kMaxTokens;
    return out;
  });
}

}  // namespace unlearning::core
