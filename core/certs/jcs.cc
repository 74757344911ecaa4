#include "core/certs/jcs.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace unlearning::core::certs {
namespace {

// UTF-8 -> UTF-16 code units (for sorting names). false on invalid UTF-8 (overlong forms,
// surrogates, > U+10FFFF, truncated sequences).
bool ToUtf16(std::string_view s, std::u16string* out) {
  out->clear();
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0;
    size_t len = 0;
    if (b0 < 0x80) {
      cp = b0;
      len = 1;
    } else if ((b0 & 0xE0) == 0xC0) {
      cp = b0 & 0x1F;
      len = 2;
    } else if ((b0 & 0xF0) == 0xE0) {
      cp = b0 & 0x0F;
      len = 3;
    } else if ((b0 & 0xF8) == 0xF0) {
      cp = b0 & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out->push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
      out->push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      out->push_back(static_cast<char16_t>(cp));
    }
    i += len;
  }
  return true;
}

absl::Status AppendString(std::string_view s, std::string* out) {
  std::u16string ignored;
  if (!ToUtf16(s, &ignored)) {
    return absl::InvalidArgumentError("JSON string is not valid UTF-8");
  }
  out->push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 0xF]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
  return absl::OkStatus();
}

absl::Status Append(const nlohmann::json& v, std::string* out) {
  using Type = nlohmann::json::value_t;
  switch (v.type()) {
    case Type::null:
      out->append("null");
      return absl::OkStatus();
    case Type::boolean:
      out->append(v.get<bool>() ? "true" : "false");
      return absl::OkStatus();
    case Type::string:
      return AppendString(v.get_ref<const std::string&>(), out);
    case Type::number_integer:
    case Type::number_unsigned: {
      // Exact within +-2^53; beyond, what a JavaScript parser would hold: the nearest double.
      constexpr uint64_t kExact = uint64_t{1} << 53;
      if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        if (u <= kExact) {
          out->append(std::to_string(u));
          return absl::OkStatus();
        }
        auto s = EcmaScriptNumber(static_cast<double>(u));
        if (!s.ok()) return s.status();
        out->append(*s);
        return absl::OkStatus();
      }
      const int64_t i = v.get<int64_t>();
      if (i >= -static_cast<int64_t>(kExact) && i <= static_cast<int64_t>(kExact)) {
        out->append(std::to_string(i));
        return absl::OkStatus();
      }
      auto s = EcmaScriptNumber(static_cast<double>(i));
      if (!s.ok()) return s.status();
      out->append(*s);
      return absl::OkStatus();
    }
    case Type::number_float: {
      auto s = EcmaScriptNumber(v.get<double>());
      if (!s.ok()) return s.status();
      out->append(*s);
      return absl::OkStatus();
    }
    case Type::array: {
      out->push_back('[');
      bool first = true;
      for (const auto& item : v) {
        if (!first) out->push_back(',');
        first = false;
        if (auto s = Append(item, out); !s.ok()) return s;
      }
      out->push_back(']');
      return absl::OkStatus();
    }
    case Type::object: {
      std::vector<std::pair<std::u16string, nlohmann::json::const_iterator>> members;
      members.reserve(v.size());
      for (auto it = v.begin(); it != v.end(); ++it) {
        std::u16string key;
        if (!ToUtf16(it.key(), &key)) {
          return absl::InvalidArgumentError("JSON member name is not valid UTF-8");
        }
        members.emplace_back(std::move(key), it);
      }
      std::sort(members.begin(), members.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      out->push_back('{');
      bool first = true;
      for (const auto& [key, it] : members) {
        if (!first) out->push_back(',');
        first = false;
        if (auto s = AppendString(it.key(), out); !s.ok()) return s;
        out->push_back(':');
        if (auto s = Append(it.value(), out); !s.ok()) return s;
      }
      out->push_back('}');
      return absl::OkStatus();
    }
    case Type::binary:
    case Type::discarded:
      break;
  }
  return absl::InvalidArgumentError("value has no JSON form (binary or discarded)");
}

}  // namespace

absl::StatusOr<std::string> EcmaScriptNumber(double value) {
  if (!std::isfinite(value)) {
    return absl::InvalidArgumentError("NaN and infinity have no JSON form");
  }
  if (value == 0) return std::string("0");  // also -0
  std::string out;
  if (value < 0) {
    out.push_back('-');
    value = -value;
  }
  // Shortest round-trip digits in scientific form: "d[.ddd]e[+-]XX".
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  const size_t e_pos = sci.find('e');
  std::string digits;
  for (const char c : sci.substr(0, e_pos)) {
    if (c != '.') digits.push_back(c);
  }
  int exponent = 0;
  std::string_view exp_text = sci.substr(e_pos + 1);
  if (!exp_text.empty() && exp_text.front() == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exponent);
  // ECMA-262 Number::toString: value = 0.digits * 10^n, k digits.
  const int k = static_cast<int>(digits.size());
  const int n = exponent + 1;
  if (k <= n && n <= 21) {
    out.append(digits).append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<size_t>(n))
        .append(".")
        .append(digits, static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out.append("0.").append(static_cast<size_t>(-n), '0').append(digits);
  } else {
    out.push_back(digits[0]);
    if (k > 1) out.append(".").append(digits, 1);
    absl::StrAppend(&out, "e", n - 1 >= 0 ? "+" : "-", n - 1 >= 0 ? n - 1 : 1 - n);
  }
  return out;
}

absl::StatusOr<std::string> CanonicalJson(const nlohmann::json& value) {
  std::string out;
  if (auto s = Append(value, &out); !s.ok()) return s;
  return out;
}

}  // namespace unlearning::core::certs
