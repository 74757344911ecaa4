#include "core/text/hf_pretokenizer.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

namespace unlearning::core::hf {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Character class bits.
constexpr uint8_t kLetter = 1;
constexpr uint8_t kNumber = 2;
constexpr uint8_t kSpace = 4;
constexpr uint8_t kNewline = 8;  // \r or \n

uint8_t ClassOf(char32_t cp) {
  if (cp == kInvalidByte) return 0;
  if (cp == '\r' || cp == '\n') return kSpace | kNewline;
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kLetter;
    if (cp >= '0' && cp <= '9') return kNumber;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return kSpace;
    return 0;
  }
  const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(cp));
  if (mask & U_GC_L_MASK) return kLetter;
  if (mask & U_GC_N_MASK) return kNumber;
  if (u_isUWhiteSpace(static_cast<UChar32>(cp))) return kSpace;
  return 0;
}

char32_t AsciiLower(char32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

struct Chars {
  std::vector<char32_t> cp;
  std::vector<uint8_t> cls;
  std::vector<size_t> begin;  // byte offset of each character; begin[n] = text size
};

Chars Decode(std::string_view text) {
  Chars chars;
  chars.cp.reserve(text.size());
  chars.cls.reserve(text.size());
  chars.begin.reserve(text.size() + 1);
  size_t pos = 0;
  while (pos < text.size()) {
    auto [cp, len] = DecodeUtf8At(text, pos);
    chars.cp.push_back(cp);
    chars.cls.push_back(ClassOf(cp));
    chars.begin.push_back(pos);
    pos += len;
  }
  chars.begin.push_back(text.size());
  return chars;
}

// End (exclusive) of the run of characters with class bit `bit` starting at i.
size_t RunEnd(const Chars& c, size_t i, uint8_t bit) {
  while (i < c.cp.size() && (c.cls[i] & bit)) ++i;
  return i;
}

bool IsOther(const Chars& c, size_t i) { return (c.cls[i] & (kLetter | kNumber | kSpace)) == 0; }

// \s+(?!\S) then \s+, at i (a space). Shared by all patterns.
size_t MatchSpaces(const Chars& c, size_t i) {
  const size_t n = c.cp.size();
  const size_t k = RunEnd(c, i, kSpace);
  if (k == n) return k;
  if (k - i >= 2) return k - 1;  // leaves one space to prefix the next word
  return k;
}

size_t MatchGpt2(const Chars& c, size_t i) {
  const size_t n = c.cp.size();
  if (c.cp[i] == '\'' && i + 1 < n) {
    const char32_t a = c.cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      const char32_t b = c.cp[i + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  const size_t j = (c.cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
  if (c.cls[j] & kLetter) return RunEnd(c, j, kLetter);
  if (c.cls[j] & kNumber) return RunEnd(c, j, kNumber);
  if (IsOther(c, j)) {
    size_t k = j;
    while (k < n && IsOther(c, k)) ++k;
    return k;
  }
  return MatchSpaces(c, i);
}

size_t MatchLlama3(const Chars& c, size_t i, size_t max_digits) {
  const size_t n = c.cp.size();
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c.cp[i] == '\'' && i + 1 < n) {
    const char32_t a = AsciiLower(c.cp[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      const char32_t b = AsciiLower(c.cp[i + 2]);
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c.cls[i] & kLetter) return RunEnd(c, i, kLetter);
  if (!(c.cls[i] & (kNewline | kNumber)) && i + 1 < n && (c.cls[i + 1] & kLetter)) {
    return RunEnd(c, i + 1, kLetter);
  }
  // \p{N}{1,max}
  if (c.cls[i] & kNumber) {
    size_t k = i;
    while (k < n && k - i < max_digits && (c.cls[k] & kNumber)) ++k;
    return k;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t j = (c.cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
  if (IsOther(c, j)) {
    size_t k = j;
    while (k < n && IsOther(c, k)) ++k;
    while (k < n && (c.cls[k] & kNewline)) ++k;
    return k;
  }
  // \s*[\r\n]+ : the whitespace run up to and including its last \r or \n.
  const size_t k = RunEnd(c, i, kSpace);
  for (size_t p = k; p > i; --p) {
    if (c.cls[p - 1] & kNewline) return p;
  }
  return MatchSpaces(c, i);
}

}  // namespace

std::optional<SplitPattern> RecognizeSplitPattern(std::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return std::nullopt;
}

std::string_view SplitPatternRegex(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::kGpt2:
      return kGpt2Regex;
    case SplitPattern::kLlama3:
      return kLlama3Regex;
    case SplitPattern::kQwen2:
      return kQwen2Regex;
  }
  return {};
}

void SplitByPattern(SplitPattern pattern, std::string_view text,
                    std::vector<std::pair<size_t, size_t>>* pieces) {
  const Chars chars = Decode(text);
  const size_t n = chars.cp.size();
  size_t i = 0;
  while (i < n) {
    size_t end = i + 1;
    switch (pattern) {
      case SplitPattern::kGpt2:
        end = MatchGpt2(chars, i);
        break;
      case SplitPattern::kLlama3:
        end = MatchLlama3(chars, i, 3);
        break;
      case SplitPattern::kQwen2:
        end = MatchLlama3(chars, i, 1);
        break;
    }
    if (end <= i) end = i + 1;  // every character is matched; never loop
    pieces->emplace_back(chars.begin[i], chars.begin[end]);
    i = end;
  }
}

bool IsWhiteSpace(char32_t cp) {
  return cp != kInvalidByte && u_isUWhiteSpace(static_cast<UChar32>(cp));
}

std::pair<char32_t, size_t> DecodeUtf8At(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char b0 = byte(pos);
  if (b0 < 0x80) return {b0, 1};
  size_t len = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {kInvalidByte, 1};
  }
  if (pos + len > text.size()) return {kInvalidByte, 1};
  for (size_t k = 1; k < len; ++k) {
    const unsigned char b = byte(pos + k);
    if ((b & 0xC0) != 0x80) return {kInvalidByte, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {kInvalidByte, 1};
  return {cp, len};
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string NormalizeNfc(std::string_view text) {
  bool ascii = true;
  for (char ch : text) ascii = ascii && static_cast<unsigned char>(ch) < 0x80;
  if (ascii) return std::string(text);  // ASCII is always in NFC
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return std::string(text);
  std::string out;
  out.reserve(text.size());
  const auto normalize_run = [&](std::string_view run) {
    if (run.empty()) return;
    UErrorCode err = U_ZERO_ERROR;
    icu::StringByteSink<std::string> sink(&out);
    nfc->normalizeUTF8(0, icu::StringPiece(run.data(), static_cast<int32_t>(run.size())), sink,
                       nullptr, err);
    if (U_FAILURE(err)) out.append(run);
  };
  size_t run_begin = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    auto [cp, len] = DecodeUtf8At(text, pos);
    if (cp == kInvalidByte) {
      normalize_run(text.substr(run_begin, pos - run_begin));
      out.push_back(text[pos]);
      run_begin = pos + 1;
    }
    pos += len;
  }
  normalize_run(text.substr(run_begin));
  return out;
}

const std::array<std::string, 256>& ByteToUnicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      AppendUtf8(printable ? static_cast<char32_t>(b) : next++, &t[b]);
    }
    return t;
  }();
  return table;
}

int UnicodeToByte(char32_t cp) {
  static const std::array<int, 512> inverse = [] {
    std::array<int, 512> inv;
    inv.fill(-1);
    for (int b = 0; b < 256; ++b) {
      auto [cp_b, len] = DecodeUtf8At(ByteToUnicode()[b], 0);
      (void)len;
      inv[cp_b] = b;
    }
    return inv;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

}  // namespace unlearning::core::hf
