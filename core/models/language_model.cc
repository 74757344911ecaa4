// The one token-level decoder over the LanguageModel capability.
#include "core/models/language_model.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
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

namespace {

absl::Status CheckPrompt(const LanguageModel& lm, const std::vector<int64_t>& prompt_ids) {
  const int64_t vocab = lm.vocab_size();
  if (prompt_ids.empty()) return absl::InvalidArgumentError("generate: empty prompt");
  for (int64_t id : prompt_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("generate: prompt token ", id, " outside [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const GenerateOptions& options) {
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
  return absl::OkStatus();
}

// One batch of GenerateTokensBatch: `rows` index `prompts`; left-padded when lengths differ.
absl::Status GenerateRows(const LanguageModel& lm, const std::vector<std::vector<int64_t>>& prompts,
                          const std::vector<size_t>& rows, const GenerateOptions& options,
                          const std::function<bool(size_t, int64_t)>& on_token,
                          const CancellationToken* cancel, std::vector<GeneratedTokens>& out) {
  const int64_t b = static_cast<int64_t>(rows.size());
  size_t longest = 0;
  for (size_t r : rows) longest = std::max(longest, prompts[r].size());
  const int64_t t = static_cast<int64_t>(longest);
  torch::Tensor ids = torch::full({b, t}, lm.pad_id(), torch::kInt64);
  torch::Tensor valid = torch::zeros({b, t}, torch::kBool);
  bool padded = false;
  for (int64_t i = 0; i < b; ++i) {
    const std::vector<int64_t>& p = prompts[rows[i]];
    const int64_t offset = t - static_cast<int64_t>(p.size());
    padded = padded || offset > 0;
    ids[i].narrow(0, offset, static_cast<int64_t>(p.size())).copy_(torch::tensor(p, torch::kInt64));
    valid[i].narrow(0, offset, static_cast<int64_t>(p.size())).fill_(true);
  }
  std::unique_ptr<DecodeState> state = lm.NewGenerationState(b);
  torch::Tensor logits = padded ? state->StepPadded(ids, valid) : state->Step(ids);  // [B, V]
  std::vector<std::mt19937_64> rngs(rows.size(), std::mt19937_64(options.seed));
  std::vector<bool> done(rows.size(), false);
  size_t running = rows.size();
  for (int64_t step = 0; step < options.max_new_tokens && running > 0; ++step) {
    torch::Tensor picks = options.temperature <= 0.0 ? logits.argmax(-1).to(torch::kCPU) : logits;
    std::vector<int64_t> next(rows.size(), lm.pad_id());
    for (size_t i = 0; i < rows.size(); ++i) {
      if (done[i]) continue;
      const int64_t id = options.temperature <= 0.0
                             ? picks[static_cast<int64_t>(i)].item<int64_t>()
                             : PickToken(logits[static_cast<int64_t>(i)], options, rngs[i]);
      GeneratedTokens& row = out[rows[i]];
      if (options.stop_at_eos && lm.IsStopToken(id)) {
        row.finish_reason = FinishReason::kEos;
      } else {
        row.ids.push_back(id);
        next[i] = id;
        if (on_token && !on_token(rows[i], id)) {
          row.finish_reason = FinishReason::kStopped;
        } else if (step + 1 < options.max_new_tokens) {
          continue;
        }
      }
      done[i] = true;
      --running;
    }
    if (running == 0 || step + 1 == options.max_new_tokens) break;
    if (cancel != nullptr && cancel->cancelled()) {
      return absl::CancelledError("generation cancelled");
    }
    // Finished rows keep stepping (a pad id) so the batch stays rectangular; their output is done.
    logits = state->Step(torch::tensor(next, torch::kInt64).view({b, 1}));
  }
  return absl::OkStatus();
}

}  // namespace

torch::Tensor DecodeState::StepAll(const torch::Tensor& /*ids*/) {
  TORCH_CHECK(false, "this model's decode state returns only the last position's logits");
  return {};
}

torch::Tensor DecodeState::StepPadded(const torch::Tensor& ids, const torch::Tensor& valid) {
  TORCH_CHECK(valid.all().item<bool>(), "this model's decode state does not support padding");
  return Step(ids);
}

bool LanguageModel::IsStopToken(int64_t id) const {
  if (id == eos_id()) return true;
  for (int64_t stop : tokenizer().stop_ids()) {
    if (id == stop) return true;
  }
  return false;
}

std::vector<torch::Tensor> LanguageModel::HiddenStates(const torch::Tensor& /*ids*/) const {
  TORCH_CHECK(false, "this language model exposes no hidden states");
  return {};
}

absl::StatusOr<GeneratedTokens> GenerateTokens(const LanguageModel& lm,
                                               const std::vector<int64_t>& prompt_ids,
                                               const GenerateOptions& options,
                                               const std::function<bool(int64_t)>& on_token,
                                               const CancellationToken* cancel) {
  UNL_RETURN_IF_ERROR(CheckPrompt(lm, prompt_ids));
  UNL_RETURN_IF_ERROR(CheckOptions(options));
  auto cancelled = [cancel] { return cancel != nullptr && cancel->cancelled(); };
  return TorchCall("generate", [&]() -> absl::StatusOr<GeneratedTokens> {
    c10::InferenceMode guard;
    GeneratedTokens out;
    if (options.max_new_tokens == 0) return out;
    if (cancelled()) return absl::CancelledError("generation cancelled");
    std::mt19937_64 rng(options.seed);
    std::unique_ptr<DecodeState> state = lm.NewGenerationState(1);
    torch::Tensor logits = state->Step(torch::tensor(prompt_ids, torch::kInt64).view({1, -1}))[0];
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      const int64_t next = PickToken(logits, options, rng);
      if (options.stop_at_eos && lm.IsStopToken(next)) {
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

absl::StatusOr<std::vector<GeneratedTokens>> GenerateTokensBatch(
    const LanguageModel& lm, const std::vector<std::vector<int64_t>>& prompts,
    const GenerateOptions& options, const std::function<bool(size_t, int64_t)>& on_token,
    const CancellationToken* cancel, int64_t max_batch) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    absl::Status status = CheckPrompt(lm, prompts[i]);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("prompt ", i, ": ", status.message()));
    }
  }
  UNL_RETURN_IF_ERROR(CheckOptions(options));
  if (max_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_batch must be >= 1, got ", max_batch));
  }
  std::vector<GeneratedTokens> out(prompts.size());
  for (GeneratedTokens& row : out) row.finish_reason = FinishReason::kMaxTokens;
  if (prompts.empty() || options.max_new_tokens == 0) return out;
  // Batches: with padding, prompts in order; without, prompts of equal length.
  const bool padding = lm.NewGenerationState(1)->supports_padding();
  std::vector<size_t> order(prompts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (!padding) {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return prompts[a].size() < prompts[b].size(); });
  }
  absl::Status status = TorchCall("generate", [&]() -> absl::Status {
    c10::InferenceMode guard;
    for (size_t begin = 0; begin < order.size();) {
      if (cancel != nullptr && cancel->cancelled()) {
        return absl::CancelledError("generation cancelled");
      }
      size_t end = begin;
      while (end < order.size() && static_cast<int64_t>(end - begin) < max_batch &&
             (padding || prompts[order[end]].size() == prompts[order[begin]].size())) {
        ++end;
      }
      const std::vector<size_t> rows(order.begin() + begin, order.begin() + end);
      UNL_RETURN_IF_ERROR(GenerateRows(lm, prompts, rows, options, on_token, cancel, out));
      begin = end;
    }
    return absl::OkStatus();
  });
  UNL_RETURN_IF_ERROR(status);
  return out;
}

}  // namespace unlearning::core
