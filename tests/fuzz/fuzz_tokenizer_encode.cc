// HfTokenizer::Encode / Decode of arbitrary text with the two fixed tokenizers of
// tests/fuzz/fixed_tokenizers.h:
//   - a byte-level BPE (Llama 3 layout: Split with the Llama 3 regex, then ByteLevel): every byte
//     string, valid UTF-8 or not, must come back exactly from decode(encode(text)) unless it holds
//     the special token's text (special tokens are dropped on decode);
//   - a SentencePiece-style BPE with byte fallback (Llama 2 layout): valid UTF-8 text without "▁"
//     (which the decoder turns into a space) and without an added token's text must come back.
// Every id must be in the vocabulary.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/text/hf_pretokenizer.h"
#include "core/text/hf_tokenizer.h"
#include "tests/fuzz/fixed_tokenizers.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace fuzz = ::unlearning::fuzz;
using ::unlearning::core::HfTokenizer;
namespace hf = ::unlearning::core::hf;

std::unique_ptr<HfTokenizer> Make(const fuzz::TokenizerFiles& files) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok =
      HfTokenizer::FromJson(files.tokenizer.dump(), files.config.dump(), "fuzz");
  if (!tok.ok()) {
    std::fprintf(stderr, "fixed tokenizer does not load: %s\n", tok.status().ToString().c_str());
    std::abort();
  }
  return *std::move(tok);
}

bool IsValidUtf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    auto [cp, len] = hf::DecodeUtf8At(s, pos);
    if (cp == hf::kInvalidByte) return false;
    pos += len;
  }
  return true;
}

void CheckIds(const HfTokenizer& t, const std::vector<int64_t>& ids) {
  for (int64_t id : ids) FUZZ_CHECK(id >= 0 && id < t.vocab_size());
}

}  // namespace

namespace {

void WriteSeeds(const std::string& dir) {
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"english", "Hello world! It's the 123rd time they're testing, isn't it?\n"},
      {"spaces", "  leading and   inner spaces\t\r\n\n trailing  "},
      {"unicode", "caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 e\xcc\x81"},
      {"invalid_utf8", "\xff\xfe\xc3 \xe2\x82 \xed\xa0\x80 ok"},
      {"added_tokens", "a<|end|>b<s>c</s><unk>\xe2\x96\x81x"},
      {"digits", "31415926535 1,000,000.25 0x7f"},
  };
  for (const auto& [name, text] : texts) unlearning::fuzz::WriteSeed(dir, name, text);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  unlearning::fuzz::MaybeWriteSeeds(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<HfTokenizer> byte_level = Make(fuzz::ByteLevelFiles());
  static const std::unique_ptr<HfTokenizer> byte_fallback = Make(fuzz::ByteFallbackFiles());
  const std::string text(reinterpret_cast<const char*>(data), size);

  const std::vector<int64_t> a = byte_level->Encode(text);
  CheckIds(*byte_level, a);
  const std::string a_text = byte_level->Decode(a);
  if (text.find("<|end|>") == std::string::npos) FUZZ_CHECK(a_text == text);

  const std::vector<int64_t> b = byte_fallback->Encode(text);
  CheckIds(*byte_fallback, b);
  const std::string b_text = byte_fallback->Decode(b);
  if (IsValidUtf8(text) && text.find(fuzz::kSentencePieceSpace) == std::string::npos &&
      text.find("<unk>") == std::string::npos && text.find("<s>") == std::string::npos &&
      text.find("</s>") == std::string::npos) {
    FUZZ_CHECK(b_text == text);
  }
  return 0;
}
