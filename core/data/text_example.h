// Text records (TOFU's question/answer JSONL) and their encoding for causal-LM training.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/text/tokenizer.h"
#include "core/text/utf8.h"

namespace unlearning::core {

// One record. JSONL keys: "question", "answer", optional "paraphrased_questions" (array of
// strings), "perturbed_answers" (array of strings), and "entity" (the fictitious entity it is
// about; used for splits).
struct TextExample {
  std::string question;
  std::string answer;
  std::vector<std::string> paraphrased_questions;
  std::vector<std::string> perturbed_answers;
  std::string entity;
};

// Reads a JSONL file. kNotFound if missing; kInvalidArgument naming the line on a malformed line,
// a missing/empty question or answer, or invalid UTF-8.
absl::StatusOr<std::vector<TextExample>> ReadJsonl(const std::string& path);
absl::Status WriteJsonl(const std::string& path, const std::vector<TextExample>& examples);

// Token ids of one training sequence in the tokenizer's QA layout (Tokenizer::QaPromptText):
// [BOS, when the tokenizer adds one] + prompt + answer (+ the end of the answer turn: the EOS
// token, or the chat format's closing text), and where the answer starts. An empty answer gives
// the prompt alone (for generation).
struct EncodedExample {
  std::vector<int64_t> ids;
  int64_t answer_start = 0;  // index into ids of the first answer token
};
EncodedExample EncodeQa(const Tokenizer& tokenizer, std::string_view question,
                        std::string_view answer, bool add_eos = true);

// A right-padded batch. labels are pre-shifted: labels[b, t] is the token logits[b, t] must
// predict (ids[b, t + 1]) for answer positions, and -100 (kIgnoreIndex) elsewhere (prompt,
// padding, last position).
struct TokenBatch {
  torch::Tensor input_ids;  // [B, T] int64
  torch::Tensor labels;     // [B, T] int64
};
constexpr int64_t kIgnoreIndex = -100;

// Pads to the longest sequence (capped at max_length, truncating from the right).
TokenBatch Collate(const std::vector<EncodedExample>& examples, int64_t pad_id,
                   int64_t max_length = 512);

}  // namespace unlearning::core
