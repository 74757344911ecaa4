#include "core/text/utf8.h"

#include <cstdint>

namespace unlearning::core {

std::string ToValidUtf8(std::string_view s) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Continuation bytes needed and the allowed range of the first one (Unicode Table 3-7).
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c == 0xE0) {
      need = 2, lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      need = 2;
    } else if (c == 0xED) {
      need = 2, hi = 0x9F;
    } else if (c == 0xF0) {
      need = 3, lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      need = 3;
    } else if (c == 0xF4) {
      need = 3, hi = 0x8F;
    } else {
      out += kReplacement;  // a stray continuation byte or a byte never used in UTF-8
      ++i;
      continue;
    }
    size_t j = 1;  // bytes of this sequence that are valid so far
    for (; j <= need && i + j < s.size(); ++j) {
      const unsigned char d = static_cast<unsigned char>(s[i + j]);
      const bool ok = j == 1 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
      if (!ok) break;
    }
    if (j == need + 1) {
      out.append(s.substr(i, j));
    } else {
      out += kReplacement;  // one U+FFFD for the maximal valid-so-far prefix
    }
    i += j;
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    uint32_t cp;
    uint32_t min_cp;
    if (c >= 0xC2 && c <= 0xDF) {  // 0xC0/0xC1 would only encode overlong ASCII
      extra = 1;
      cp = c & 0x1F;
      min_cp = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
      min_cp = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      cp = c & 0x07;
      min_cp = 0x10000;
    } else {
      return false;  // continuation byte as lead, 0xC0, 0xC1, 0xF5..0xFF
    }
    if (n - i <= static_cast<size_t>(extra)) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = p[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min_cp) return false;                   // overlong
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;  // UTF-16 surrogate
    if (cp > 0x10FFFF) return false;
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

size_t CompleteUtf8Prefix(std::string_view bytes) {
  const size_t n = bytes.size();
  // Step back over at most 3 continuation bytes to the start of the last character.
  size_t start = n;
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(bytes[n - back]);
    if ((c & 0xC0) != 0x80) {
      start = n - back;
      break;
    }
  }
  if (start == n) return n;
  const unsigned char lead = static_cast<unsigned char>(bytes[start]);
  size_t need = 1;
  if ((lead & 0xE0) == 0xC0)
    need = 2;
  else if ((lead & 0xF0) == 0xE0)
    need = 3;
  else if ((lead & 0xF8) == 0xF0)
    need = 4;
  return n - start >= need ? n : start;
}

}  // namespace unlearning::core
