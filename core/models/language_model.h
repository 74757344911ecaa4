// The LanguageModel capability: what Generate, Score, the text verifier and a composite (ULD's
// target minus assistant) need from a causal language model, whatever its architecture.
//
// Shapes: B = batch, T = sequence length, V = vocab_size().
//
//   const LanguageModel* lm = model.AsLanguageModel();
//   std::unique_ptr<DecodeState> state = lm->NewDecodeState(1);
//   torch::Tensor logits = state->Step(prompt);       // prefill [1, P] -> [1, V]
//   logits = state->Step(next_token);                  // one token [1, 1] -> [1, V]
//
// The token-level decoder (GenerateTokens) lives here, beside the capability, so that every layer
// (verification, methods, the text free functions of core/app/text_inference.h) shares one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/text/tokenizer.h"

namespace unlearning::core {

// The incremental decoding state of B sequences of equal length: the model's own KV cache (a
// composite holds one state per inner model). Not thread-safe; owned by one generation. It refers
// to the model that made it, which must outlive it.
class DecodeState {
 public:
  virtual ~DecodeState() = default;
  // Appends `ids` after the positions consumed so far (a prefill of many tokens, then one token at
  // a time) and returns the logits at the last new position, without autograd.
  //   ids: [B, T_new] int64 with T_new >= 1 (any device); returns [B, V] float32 on the model's
  //   device. Throws c10::Error on a wrong shape (callers run it inside TorchCall).
  virtual torch::Tensor Step(const torch::Tensor& ids) = 0;
  // Positions consumed so far.
  virtual int64_t length() const = 0;
  virtual int64_t batch_size() const = 0;
  // Whether StepPadded works: rows of different lengths decoded together, left-padded.
  virtual bool supports_padding() const { return false; }
  // Step for left-padded rows: `valid` [B, T_new] bool is false at padding, which no later
  // position attends to; every row's real tokens then decode as they would alone. The default
  // accepts only all-true `valid` (no padding) and throws c10::Error otherwise.
  virtual torch::Tensor StepPadded(const torch::Tensor& ids, const torch::Tensor& valid);
  // Keeps the cached sequences `rows` ([B'] int64 on the CPU, in [0, batch_size()), repeats
  // allowed), in that order, so that a prompt prefilled once continues in several rows (answers
  // scored against a shared question). Returns false, the state unchanged, when the state cannot;
  // the default.
  virtual bool SelectRows(const torch::Tensor& rows) { return false; }
  // Step returning the logits at every new position: [B, T_new, V] float32. States whose
  // SelectRows works implement it; the default throws c10::Error.
  virtual torch::Tensor StepAll(const torch::Tensor& ids);
};

// A causal language model. Thread-compatible: const methods may run concurrently; each decode
// state belongs to one caller.
class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  virtual const Tokenizer& tokenizer() const = 0;
  // The model's special ids (config.json): a sequence starts with bos_id(); generation stops at
  // eos_id(); pad_id() right-pads batches.
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
  virtual int64_t pad_id() const = 0;
  // Whether generation ends at `id` (the id is not reported): eos_id() and the tokenizer's stop
  // ids (its eos and its chat format's end-of-turn token, e.g. Llama 3's <|eot_id|>); a causal LM
  // adds the other ids of a list-valued eos_token_id in config.json (as Llama 3.1 writes it).
  virtual bool IsStopToken(int64_t id) const;
  // Width V of the logits (>= tokenizer().vocab_size()).
  virtual int64_t vocab_size() const = 0;
  // Longest sequence (prompt + generated tokens) the model was built for.
  virtual int64_t max_context() const = 0;
  // Full causal forward without autograd (inference mode).
  //   ids: [B, T] int64, right-padded (any device); returns [B, T, V] float32 on the model's
  //   device.
  virtual torch::Tensor Logits(const torch::Tensor& ids) const = 0;
  // A fresh decoding state for `batch` sequences (no position consumed yet).
  virtual std::unique_ptr<DecodeState> NewDecodeState(int64_t batch) const = 0;
  // The decoding state GenerateTokens samples from. A model may restrict there which tokens can be
  // produced (ULD's composite drops those its relative-top filter removes); scoring uses
  // NewDecodeState / Logits. The default is NewDecodeState.
  virtual std::unique_ptr<DecodeState> NewGenerationState(int64_t batch) const {
    return NewDecodeState(batch);
  }

  // Number of decoder blocks whose outputs HiddenStates returns; 0 when the model exposes none
  // (e.g. a composite of two models).
  virtual int64_t num_hidden_layers() const { return 0; }
  // The residual stream after each block, without autograd: element l is the stream after the
  // first l blocks (0 = embeddings, num_hidden_layers() = the last block, before the final norm).
  //   ids: [B, T] int64, right-padded; returns num_hidden_layers() + 1 tensors [B, T, C] float32
  //   on the model's device. Throws c10::Error when the model exposes no hidden states.
  virtual std::vector<torch::Tensor> HiddenStates(const torch::Tensor& ids) const;
};

// Decoding options for GenerateTokens (and the text-level Generate of core/app/text_inference.h).
struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;        // nucleus mass, (0, 1]
  uint64_t seed = 0;
  bool stop_at_eos = true;
};

// Why a generation ended.
enum class FinishReason {
  kEos,        // the model produced a stop token (IsStopToken, with stop_at_eos; not reported)
  kMaxTokens,  // max_new_tokens were generated
  kStopped,    // the on_token callback returned false
};
// "eos", "max_tokens", "stopped".
const char* FinishReasonName(FinishReason reason);

struct GeneratedTokens {
  std::vector<int64_t> ids;  // the generated ids, in order (EOS excluded)
  FinishReason finish_reason = FinishReason::kMaxTokens;
};

// Generates after `prompt_ids` (which should start with lm.bos_id()) through one decode state,
// calling `on_token` (may be empty) with each new id: greedy when temperature == 0, else nucleus
// sampling with a std::mt19937_64 seeded by `options.seed` (same seed, prompt and options => same
// ids). Stops when `on_token` returns false (the id is kept), at EOS (if stop_at_eos), or after
// max_new_tokens. kInvalidArgument for an empty prompt, a prompt id outside [0, vocab_size()),
// max_new_tokens < 0, a negative or non-finite temperature, or top_p outside (0, 1]; kCancelled
// when `cancel` (may be null) fires between tokens; LibTorch errors become a status.
absl::StatusOr<GeneratedTokens> GenerateTokens(const LanguageModel& lm,
                                               const std::vector<int64_t>& prompt_ids,
                                               const GenerateOptions& options,
                                               const std::function<bool(int64_t)>& on_token,
                                               const CancellationToken* cancel = nullptr);

// GenerateTokens for many prompts at once (same options; each row as GenerateTokens would produce
// it alone, up to floating-point rounding in batched matmuls, with its own std::mt19937_64 seeded
// by options.seed). Prompts of different lengths are left-padded into one batch of at most
// `max_batch` rows when the model's decode state supports padding, else batched by equal length.
// `on_token(row, id)` (may be empty) returning false ends that row (the id is kept). Errors as
// GenerateTokens, for any prompt.
absl::StatusOr<std::vector<GeneratedTokens>> GenerateTokensBatch(
    const LanguageModel& lm, const std::vector<std::vector<int64_t>>& prompts,
    const GenerateOptions& options, const std::function<bool(size_t, int64_t)>& on_token,
    const CancellationToken* cancel = nullptr, int64_t max_batch = 32);

}  // namespace unlearning::core
