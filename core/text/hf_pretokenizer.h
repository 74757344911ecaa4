// Unicode pieces of the Hugging Face tokenizer.json support (core/text/hf_tokenizer.h): UTF-8
// decoding that keeps invalid bytes, the Split pre-tokenizer regexes of GPT-2, Llama 3 and
// Qwen2/3 as hand-written matchers over code points (character classes from ICU), NFC, and the
// ByteLevel byte-to-unicode table. All functions are pure and thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unlearning::core::hf {

// The Split regexes this build implements (matched by their exact text in tokenizer.json).
enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} (one digit per piece) instead of \p{N}{1,3}.
  kQwen2,
};

// The pattern whose regex text is `regex`; nullopt if this build does not implement it.
std::optional<SplitPattern> RecognizeSplitPattern(std::string_view regex);

// The regex text of `pattern` as it appears in tokenizer.json.
std::string_view SplitPatternRegex(SplitPattern pattern);

// Splits `text` into the matches of `pattern` ("Isolated" behaviour: matches and the text between
// them are pieces; with these patterns every character is inside a match). Appends the byte ranges
// [begin, end) of the pieces, in order, to `pieces`; they cover `text` exactly. Bytes that are not
// valid UTF-8 count as one character each that is neither letter, number nor space.
// Semantics: \p{L}, \p{N} = Unicode general categories L and N; \s = the White_Space property
// (as Hugging Face's Oniguruma/Rust regexes); (?i:...) folds ASCII case only.
void SplitByPattern(SplitPattern pattern, std::string_view text,
                    std::vector<std::pair<size_t, size_t>>* pieces);

// True if `cp` has the White_Space property.
bool IsWhiteSpace(char32_t cp);

// `text` in Normalization Form C. Bytes that are not valid UTF-8 are kept as they are (the valid
// runs between them are normalised separately).
std::string NormalizeNfc(std::string_view text);

// GPT-2's ByteLevel table: the UTF-8 encoding of the character that stands for byte b.
const std::array<std::string, 256>& ByteToUnicode();

// The byte that code point `cp` stands for in the ByteLevel table, or -1.
int UnicodeToByte(char32_t cp);

// Decodes one code point of `text` at `pos`. Returns {code point, length in bytes}; an invalid
// byte gives {kInvalidByte, 1}.
inline constexpr char32_t kInvalidByte = 0xFFFFFFFF;
std::pair<char32_t, size_t> DecodeUtf8At(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of `cp` (a valid scalar value) to `out`.
void AppendUtf8(char32_t cp, std::string* out);

}  // namespace unlearning::core::hf
