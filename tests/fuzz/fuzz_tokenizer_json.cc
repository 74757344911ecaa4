// HfTokenizer::FromJson on arbitrary tokenizer.json / tokenizer_config.json contents (the input's
// bytes before its first NUL byte are tokenizer.json, the rest tokenizer_config.json): never
// crashes; refuses with kInvalidArgument; a tokenizer it accepts encodes fixed texts to ids of its
// vocabulary, decodes them, and its chat template is recognised or refused without a crash.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/text/hf_chat_format.h"
#include "core/text/hf_tokenizer.h"
#include "tests/fuzz/fixed_tokenizers.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// The two fixed tokenizers, and variants with the other normalizers, pre-tokenizers and a chat
// template, as tokenizer.json NUL tokenizer_config.json.
void WriteSeeds(const std::string& dir) {
  using unlearning::fuzz::TokenizerFiles;
  const auto write = [&](const std::string& name, const TokenizerFiles& f) {
    unlearning::fuzz::WriteSeed(dir, name,
                                f.tokenizer.dump() + std::string(1, '\0') + f.config.dump());
  };
  TokenizerFiles byte_level = unlearning::fuzz::ByteLevelFiles();
  write("byte_level", byte_level);
  TokenizerFiles byte_fallback = unlearning::fuzz::ByteFallbackFiles();
  write("byte_fallback", byte_fallback);

  TokenizerFiles gpt2 = byte_level;
  gpt2.tokenizer["pre_tokenizer"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  gpt2.tokenizer["normalizer"] = {{"type", "NFC"}};
  gpt2.tokenizer["model"]["ignore_merges"] = true;
  gpt2.tokenizer["added_tokens"].push_back(
      {{"id", 400}, {"content", "<tool>"}, {"lstrip", true}, {"rstrip", true}});
  gpt2.config["chat_template"] =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
  gpt2.config["additional_special_tokens"] = {"<tool>"};
  write("gpt2_nfc_chat", gpt2);

  TokenizerFiles qwen = byte_level;
  qwen.tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = std::string(
      unlearning::core::hf::SplitPatternRegex(unlearning::core::hf::SplitPattern::kQwen2));
  qwen.config = {
      {"eos_token", {{"content", "<|end|>"}}},
      {"pad_token", nullptr},
      {"chat_template", {{{"name", "default"}, {"template", "[INST] <<SYS>> [/INST]"}}}}};
  write("qwen2_split", qwen);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  unlearning::fuzz::MaybeWriteSeeds(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using unlearning::core::HfTokenizer;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  std::string tokenizer_json = input.substr(0, nul);
  std::string config_json = nul == std::string::npos ? "" : input.substr(nul + 1);
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok =
      HfTokenizer::FromJson(std::move(tokenizer_json), std::move(config_json), "fuzz");
  FUZZ_CHECK_OK_OR_INVALID(tok.status());
  if (!tok.ok()) return 0;

  const HfTokenizer& t = **tok;
  const int64_t vocab = t.vocab_size();
  FUZZ_CHECK(vocab > 0);
  for (int64_t id : {t.bos_id(), t.eos_id(), t.pad_id()}) FUZZ_CHECK(id >= 0 && id < vocab);
  for (const char* text :
       {"Hello, world! It's 2026: caf\xc3\xa9 na\xc3\xafve \xe2\x96\x81x  \n\t 12345 <s></s>",
        "\xff\xfe invalid \xc3 utf-8 \xe2\x82", ""}) {
    const std::vector<int64_t> ids = t.Encode(text);
    for (int64_t id : ids) FUZZ_CHECK(id >= 0 && id < vocab);
    (void)t.Decode(ids);
  }
  // Every id, including holes in the vocabulary, decodes without a crash.
  std::vector<int64_t> all;
  for (int64_t id = -1; id <= vocab && id < 4096; ++id) all.push_back(id);
  (void)t.Decode(all);
  FUZZ_CHECK_OK_OR_INVALID(unlearning::core::ChatTemplate::Recognize(t.chat_template()).status());
  return 0;
}
