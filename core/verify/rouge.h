// ROUGE-L (longest common subsequence) on word tokens, as TOFU / MUSE use it to
// measure verbatim memorisation of a greedy answer against the true answer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace unlearning::core {

// Word tokens: ASCII letters lower-cased; ASCII whitespace and ASCII
// punctuation separate tokens (as rouge_score's default tokenizer does, without
// stemming); bytes >= 0x80 (non-ASCII UTF-8) stay part of their token. "Born in
// Lisbon." -> {"born", "in", "lisbon"}.
std::vector<std::string> RougeTokens(std::string_view text);

// Length of the longest common subsequence of two token sequences. O(|a|·|b|)
// time, O(min(|a|, |b|)) memory.
int64_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b);

struct RougeL {
  double precision = 0.0;  // LCS / |candidate|
  double recall = 0.0;     // LCS / |reference|
  double f1 = 0.0;
};

// ROUGE-L of `candidate` (e.g. generated) against `reference` (the true
// answer). All figures are 0 when either side has no tokens.
RougeL RougeLScore(std::string_view reference, std::string_view candidate);
inline double RougeLRecall(std::string_view reference, std::string_view candidate) {
  return RougeLScore(reference, candidate).recall;
}

}  // namespace unlearning::core
