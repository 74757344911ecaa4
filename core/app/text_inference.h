// Text inference as free functions over the LanguageModel capability (language_model.h), so that
// the gRPC services only convert and a composite model (ULD's target minus assistant) is served
// like any other: Generate streams UTF-8 text chunks, Score gives per-token log-probabilities.
//
// Both tokenise as the InferenceService documents: [bos_id()] + Encode(prompt), the prompt wrapped
// in the model's QA layout (Tokenizer::QaPromptText: its chat format, else "Question: ...\nAnswer:
// ") when `qa_format` is set; a continuation's tokens follow without BOS or EOS (with `qa_format`,
// laid out as the QA answer: Tokenizer::QaAnswerText).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "core/common/cancellation.h"
#include "core/models/language_model.h"

namespace unlearning::core {

// Request limits (documented in proto/unlearning/v1 GenerateRequest).
inline constexpr int64_t kMaxGenerateTokens = 4096;
inline constexpr double kMaxTemperature = 10.0;

// A text prompt as a request gives it.
struct TextPrompt {
  std::string text;
  bool qa_format = false;  // wrap in the QA layout (Tokenizer::QaPromptText)
};

// A piece of generated text: only complete UTF-8 characters; the bytes of a character split over
// tokens are held back until it completes. `token_ids` are the ids decoded since the last chunk.
struct TextChunk {
  std::string text;
  std::vector<int64_t> token_ids;
};

struct TextGeneration {
  std::vector<int64_t> token_ids;  // every generated id (EOS excluded)
  // Decode(token_ids) as streamed: invalid UTF-8 sequences replaced by U+FFFD (ToValidUtf8), so
  // it is always valid UTF-8 and equals the chunks' texts followed by the tail's.
  std::string text;
  FinishReason finish_reason = FinishReason::kMaxTokens;
  // What no chunk carried yet (possibly empty): a streaming caller sends it with the finish reason.
  TextChunk tail;
};

// Generates after `prompt` and calls `on_chunk` (may be empty) with each chunk of complete
// characters; generation stops (FinishReason::kStopped) when it returns false.
// kInvalidArgument, with the message a client can act on, for an empty prompt, a prompt that is
// not valid UTF-8, max_new_tokens outside [1, kMaxGenerateTokens], temperature outside
// [0, kMaxTemperature], top_p outside (0, 1], or prompt + max_new_tokens longer than the model's
// context; kCancelled when `cancel` (may be null) fires.
absl::StatusOr<TextGeneration> Generate(const LanguageModel& lm, const TextPrompt& prompt,
                                        const GenerateOptions& options,
                                        const std::function<bool(const TextChunk&)>& on_chunk,
                                        const CancellationToken* cancel = nullptr);

// Scores of one continuation after the prompt.
struct ContinuationScore {
  std::vector<double> token_log_probs;  // log p(token | prompt, previous tokens), in order
  double log_probability = 0.0;         // their sum
  int64_t num_tokens = 0;
  double mean_token_probability = 0.0;  // exp(log_probability / num_tokens)
};

// Scores each continuation after `prompt` (one forward pass per batch of continuations, right-
// padded). kInvalidArgument if there is no continuation, one is empty or tokenises to nothing, a
// text is not valid UTF-8, or prompt + continuation is longer than the model's context;
// kCancelled when `cancel` (may be null) fires between batches.
absl::StatusOr<std::vector<ContinuationScore>> Score(const LanguageModel& lm,
                                                     const TextPrompt& prompt,
                                                     const std::vector<std::string>& continuations,
                                                     const CancellationToken* cancel = nullptr);

}  // namespace unlearning::core
