// Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) behind the Tokenizer interface:
//   - byte-level BPE as in GPT-2, Llama 3 and Qwen2/3 (Split pre-tokenizer with their regexes,
//     ByteLevel, merges by rank, ignore_merges);
//   - SentencePiece-style BPE with byte fallback as in Llama 2 and Mistral (normalizer Prepend "▁"
//     + Replace " " -> "▁", <0xNN> byte tokens, decoder Replace/ByteFallback/Fuse/Strip).
// Added tokens are split out of the text before normalisation (leftmost-longest; lstrip/rstrip
// honoured), so Encode("a<s>b") contains the id of <s> when <s> is an added token.
// Anything else (other model types, normalizers, pre-tokenizers, decoders, regexes) is refused at
// load time with kInvalidArgument naming it. See docs/tokenizers.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "core/text/hf_chat_format.h"
#include "core/text/tokenizer.h"

namespace unlearning::core {

namespace hf_internal {
struct Model;  // defined in hf_tokenizer.cc
}  // namespace hf_internal

// Thread-safe (all methods are const; the per-word cache is guarded by a mutex).
class HfTokenizer : public Tokenizer {
 public:
  static constexpr char kTokenizerFile[] = "tokenizer.json";
  static constexpr char kConfigFile[] = "tokenizer_config.json";

  // Loads <dir>/tokenizer.json and <dir>/tokenizer_config.json. kNotFound if either is missing;
  // kInvalidArgument naming the file and key for malformed or unsupported content.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(const std::string& dir);

  // As Load, from the two files' contents; `origin` prefixes error messages.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(std::string tokenizer_json,
                                                               std::string config_json,
                                                               std::string_view origin);

  ~HfTokenizer() override;

  // Token ids of `text`; no bos/eos are added (added-token strings in the text do give their ids).
  // Invalid UTF-8 is tolerated: such bytes go through byte fallback / the ByteLevel table.
  std::vector<int64_t> Encode(std::string_view text) const override;
  // Text of `ids`; special added tokens and unknown ids are dropped; no clean-up of spaces.
  std::string Decode(const std::vector<int64_t>& ids) const override;
  // 1 + the largest id of the vocabulary and the added tokens.
  int64_t vocab_size() const override;
  // bos_token of tokenizer_config.json; without one (Qwen2/3), the pad token (Qwen2's
  // config.json uses <|endoftext|> as its bos id), else the eos token.
  int64_t bos_id() const override;
  int64_t eos_id() const override;
  // pad_token, else eos_token (as transformers).
  int64_t pad_id() const override;
  // Writes tokenizer.json and tokenizer_config.json back, byte for byte as loaded.
  absl::Status Save(const std::string& dir) const override;

  // Whether a bos token starts a sequence: add_bos_token of tokenizer_config.json, else true when
  // a bos_token is configured.
  bool add_bos_token() const;
  bool add_bos() const override { return add_bos_token(); }
  // Id of a vocabulary or added token given by its content, if any.
  std::optional<int64_t> TokenId(std::string_view token) const;
  // chat_template of tokenizer_config.json ("" if none).
  const std::string& chat_template() const;
  // Its recognised format (Load refuses a template it does not recognise); null without one.
  const ChatTemplate* chat_format() const;
  // The chat format's user turn and generation prompt, its answer and end of turn when there is
  // one; the plain layout otherwise. For Llama 2 (a Prepend "▁" normalizer, which gives the
  // answer's first word its space when it is encoded on its own) the answer's leading space is
  // left to the normalizer, so that Encode(prompt) + Encode(answer + end) equals the encoding of
  // the rendered conversation.
  std::string QaPromptText(std::string_view question) const override;
  std::string QaAnswerText(std::string_view answer) const override;
  std::string QaAnswerEnd() const override;
  // eos_id() and the chat format's end-of-turn token (Llama 3: <|eot_id|>), when it has one.
  std::vector<int64_t> stop_ids() const override;

 private:
  HfTokenizer();
  std::unique_ptr<hf_internal::Model> model_;
};

}  // namespace unlearning::core
