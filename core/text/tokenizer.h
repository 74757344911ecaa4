// Tokenizer interface shared by the language-model code, plus the byte-level tokenizer used by the
// models this project trains. Hugging Face tokenizer.json BPE tokenizers implement the same
// interface (core/text/hf_tokenizer.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace unlearning::core {

// The plain QA prompt: "Question: {question}\nAnswer: ".
inline std::string QaPrompt(std::string_view question) {
  std::string prompt = "Question: ";
  prompt.append(question.data(), question.size());
  prompt += "\nAnswer: ";
  return prompt;
}

// Thread-safe (all methods are const).
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text` without special tokens.
  virtual std::vector<int64_t> Encode(std::string_view text) const = 0;
  // Text of `ids`; special tokens are dropped. Invalid UTF-8 in the byte stream is kept as is.
  virtual std::string Decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
  virtual int64_t pad_id() const = 0;
  // Whether a sequence starts with bos_id() (tokenizer_config.json's add_bos_token: Llama's do,
  // Qwen2/3's do not).
  virtual bool add_bos() const { return true; }
  // The question-answer layout of this tokenizer's model (EncodeQa for training and verification,
  // qa_format of Generate and Score): the prompt before the answer (no bos), the answer text as it
  // follows the prompt, and the text that closes the answer ("" = the eos_id() token). By default
  // the plain "Question: {question}\nAnswer: " + answer + EOS; a Hugging Face tokenizer with a
  // chat template uses its chat format (hf_chat_format.h).
  virtual std::string QaPromptText(std::string_view question) const { return QaPrompt(question); }
  virtual std::string QaAnswerText(std::string_view answer) const { return std::string(answer); }
  virtual std::string QaAnswerEnd() const { return ""; }
  // Ids at which generation ends: eos_id(), and for a chat format the token that ends its turn.
  virtual std::vector<int64_t> stop_ids() const { return {eos_id()}; }
  // Writes the tokenizer's files into a model directory (tokenizer_config.json, ...).
  virtual absl::Status Save(const std::string& dir) const = 0;
};

// Byte-level tokenizer: id 0 = <pad>, 1 = <s> (BOS), 2 = </s> (EOS), byte b = id b + 3.
// vocab_size() = 259.
class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kPad = 0;
  static constexpr int64_t kBos = 1;
  static constexpr int64_t kEos = 2;
  static constexpr int64_t kByteOffset = 3;
  static constexpr int64_t kVocabSize = 259;

  std::vector<int64_t> Encode(std::string_view text) const override;
  std::string Decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return kVocabSize; }
  int64_t bos_id() const override { return kBos; }
  int64_t eos_id() const override { return kEos; }
  int64_t pad_id() const override { return kPad; }
  absl::Status Save(const std::string& dir) const override;
};

// Loads the tokenizer described by a model directory's tokenizer_config.json: the byte tokenizer
// when it names it, else a HfTokenizer when the directory holds a tokenizer.json.
// kInvalidArgument if the directory names a tokenizer this build does not support.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir);

}  // namespace unlearning::core
