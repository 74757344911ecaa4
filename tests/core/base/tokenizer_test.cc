#include "core/text/tokenizer.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
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

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// A fresh empty directory under the test temp dir.
std::string MakeTempDir(const std::string& name) {
  static int counter = 0;
  std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      ("tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

TEST(ByteTokenizerTest, EncodesBytesAfterTheSpecialTokens) {
  ByteTokenizer tok;
  EXPECT_THAT(tok.Encode("Ab"), ElementsAre('A' + 3, 'b' + 3));
  EXPECT_THAT(tok.Encode(std::string("\x00\xff", 2)), ElementsAre(3, 258));
  EXPECT_TRUE(tok.Encode("").empty());
  EXPECT_EQ(tok.vocab_size(), 259);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
}

TEST(ByteTokenizerTest, RoundTripsArbitraryBytesIncludingInvalidUtf8) {
  ByteTokenizer tok;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  for (const std::string& text : {std::string("héllo wörld ✓"), all, std::string("\xc3\x28")}) {
    std::vector<int64_t> ids = tok.Encode(text);
    EXPECT_EQ(ids.size(), text.size());
    EXPECT_EQ(tok.Decode(ids), text);
  }
}

TEST(ByteTokenizerTest, DecodeDropsSpecialAndOutOfRangeIds) {
  ByteTokenizer tok;
  std::vector<int64_t> ids = {ByteTokenizer::kBos,
                              'h' + 3,
                              ByteTokenizer::kPad,
                              'i' + 3,
                              ByteTokenizer::kEos,
                              259,
                              -5,
                              1000};
  EXPECT_EQ(tok.Decode(ids), "hi");
}

TEST(LoadTokenizerTest, SaveThenLoadGivesAByteTokenizer) {
  const std::string dir = MakeTempDir("save");
  UNL_ASSERT_OK(ByteTokenizer().Save(dir));
  std::ifstream in(dir + "/tokenizer_config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(config["tokenizer_class"], "UnlearningByteTokenizer");
  EXPECT_EQ(config["unlearning_tokenizer"], "byte");
  EXPECT_EQ(config["eos_token"], "</s>");
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(dir));
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->Decode(tok->Encode("round trip")), "round trip");
}

TEST(LoadTokenizerTest, MissingConfigIsNotFound) {
  EXPECT_THAT(LoadTokenizer(MakeTempDir("missing")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tokenizer_config.json")));
}

TEST(LoadTokenizerTest, UnsupportedTokenizerIsInvalidArgument) {
  const std::string dir = MakeTempDir("unsupported");
  WriteText(dir + "/tokenizer_config.json", R"({"tokenizer_class": "LlamaTokenizerFast"})");
  EXPECT_THAT(LoadTokenizer(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LlamaTokenizerFast")));
  WriteText(dir + "/tokenizer_config.json", R"({"unlearning_tokenizer": "bpe"})");
  EXPECT_THAT(LoadTokenizer(dir), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bpe")));
  // The byte tokenizer is never a silent default.
  WriteText(dir + "/tokenizer_config.json", R"({})");
  EXPECT_THAT(LoadTokenizer(dir), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(LoadTokenizerTest, HuggingFaceDirectoryLoadsAnHfTokenizer) {
  const std::string dir = MakeTempDir("hf");
  nlohmann::json vocab = {{"<unk>", 0}, {"</s>", 1}, {"a", 2}, {"b", 3}, {"ab", 4}};
  const nlohmann::json tokenizer = {
      {"added_tokens", {{{"id", 1}, {"content", "</s>"}, {"special", true}}}},
      {"decoder", {{"type", "Fuse"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}, {"unk_token", "<unk>"}}},
  };
  WriteText(dir + "/tokenizer.json", tokenizer.dump());
  WriteText(dir + "/tokenizer_config.json",
            R"({"tokenizer_class": "LlamaTokenizerFast", "eos_token": "</s>"})");
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(dir));
  ASSERT_NE(dynamic_cast<HfTokenizer*>(tok.get()), nullptr);
  EXPECT_THAT(tok->Encode("abb</s>"), ElementsAre(4, 3, 1));
  EXPECT_EQ(tok->Decode({4, 3, 1}), "abb");
  EXPECT_EQ(tok->eos_id(), 1);
  // A broken tokenizer.json is an error naming the key, not a fallback to another tokenizer.
  WriteText(dir + "/tokenizer.json", R"({"model": {"type": "Unigram"}, "decoder": null})");
  EXPECT_THAT(LoadTokenizer(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.type")));
  // The project's byte tokenizer wins when its config names it, whatever else is there.
  UNL_ASSERT_OK(ByteTokenizer().Save(dir));
  UNL_ASSERT_OK_AND_ASSIGN(tok, LoadTokenizer(dir));
  EXPECT_NE(dynamic_cast<ByteTokenizer*>(tok.get()), nullptr);
}

TEST(LoadTokenizerTest, MalformedConfigIsInvalidArgument) {
  const std::string dir = MakeTempDir("malformed");
  WriteText(dir + "/tokenizer_config.json", "{\"unlearning_tokenizer\": ");
  EXPECT_THAT(LoadTokenizer(dir), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  WriteText(dir + "/tokenizer_config.json", "[\"byte\"]");
  EXPECT_THAT(LoadTokenizer(dir), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(LoadTokenizerTest, ClassNameAloneSelectsTheByteTokenizer) {
  const std::string dir = MakeTempDir("class_only");
  WriteText(dir + "/tokenizer_config.json", R"({"tokenizer_class": "UnlearningByteTokenizer"})");
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tok, LoadTokenizer(dir));
  EXPECT_EQ(tok->eos_id(), ByteTokenizer::kEos);
}

}  // namespace
}  // namespace unlearning::core
