#include "core/verify/rouge.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace unlearning::core {

std::vector<std::string> RougeTokens(std::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    const bool word_byte =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
    if (word_byte) {
      current.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : ch);
    } else if (!current.empty()) {
      tokens.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

int64_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const std::vector<std::string>& rows = a.size() >= b.size() ? a : b;
  const std::vector<std::string>& cols = a.size() >= b.size() ? b : a;
  // prev[j] / cur[j]: LCS of rows[0..i) and cols[0..j).
  std::vector<int64_t> prev(cols.size() + 1, 0);
  std::vector<int64_t> cur(cols.size() + 1, 0);
  for (size_t i = 1; i <= rows.size(); ++i) {
    for (size_t j = 1; j <= cols.size(); ++j) {
      cur[j] = rows[i - 1] == cols[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[cols.size()];
}

RougeL RougeLScore(std::string_view reference, std::string_view candidate) {
  const std::vector<std::string> ref = RougeTokens(reference);
  const std::vector<std::string> cand = RougeTokens(candidate);
  RougeL score;
  if (ref.empty() || cand.empty()) return score;
  const double lcs = static_cast<double>(LcsLength(ref, cand));
  score.precision = lcs / static_cast<double>(cand.size());
  score.recall = lcs / static_cast<double>(ref.size());
  if (lcs > 0) score.f1 = 2.0 * score.precision * score.recall / (score.precision + score.recall);
  return score;
}

}  // namespace unlearning::core
