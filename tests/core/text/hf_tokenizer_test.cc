#include "core/text/hf_tokenizer.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/text/hf_pretokenizer.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::nlohmann::json;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

constexpr char kLlama3Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A tiny byte-level BPE in the Llama 3 layout: the 256 byte symbols are ids 0..255, then
// "he" 256, "ll" 257, "hell" 258; added tokens <|end|> 300 (special) and <tool> 301 (not special,
// lstrip + rstrip).
json ByteLevelTokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[hf::ByteToUnicode()[b]] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 300}, {"content", "<|end|>"}, {"special", true}},
        {{"id", 301},
         {"content", "<tool>"},
         {"special", false},
         {"lstrip", true},
         {"rstrip", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", kLlama3Regex}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"h e", "l l", "he ll"}},
        {"ignore_merges", false}}},
  };
}

// A tiny SentencePiece-style BPE with byte fallback in the Llama 2 layout.
json ByteFallbackTokenizer() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  vocab["\xe2\x96\x81"] = 259;  // ▁
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab
      ["\xe2\x96\x81"
       "a"] = 262;
  vocab["ab"] = 263;
  vocab
      ["\xe2\x96\x81"
       "ab"] = 264;
  const std::string space = "\xe2\x96\x81";
  return {
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", space}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}}}}}},
      {"pre_tokenizer", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", json::array({json::array({space, "a"}), json::array({"a", "b"}),
                                json::array({space + "a", "b"})})},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true}}},
  };
}

// Carries the Llama 2 chat template's signature ([INST], [/INST], <<SYS>>), which is what
// ChatTemplate::Recognize looks for.
constexpr char kLlama2Signature[] =
    "{% for m in messages %}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% endfor %}{# <<SYS>> #}";

std::unique_ptr<HfTokenizer> Make(const json& tokenizer, const json& config) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tok =
      HfTokenizer::FromJson(tokenizer.dump(), config.dump(), "test");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

std::vector<std::string> Pieces(hf::SplitPattern pattern, std::string_view text) {
  std::vector<std::pair<size_t, size_t>> ranges;
  hf::SplitByPattern(pattern, text, &ranges);
  std::vector<std::string> pieces;
  for (auto [b, e] : ranges) pieces.emplace_back(text.substr(b, e - b));
  return pieces;
}

TEST(HfSplitTest, MatchesTheJavaScriptRegexesOnATrickyString) {
  // Expected pieces: the same regexes run by node (String.prototype.match with the u flag).
  const std::string text = "Hello WORLD'S  1234567 x\n\n  y\t\tz!!\r\n ok 中文abc  ";
  EXPECT_THAT(Pieces(hf::SplitPattern::kLlama3, text),
              ElementsAre("Hello", " WORLD", "'S", " ", " ", "123", "456", "7", " x", "\n\n", " ",
                          " y", "\t", "\tz", "!!\r\n", " ok", " 中文abc", "  "));
  EXPECT_THAT(Pieces(hf::SplitPattern::kQwen2, text),
              ElementsAre("Hello", " WORLD", "'S", " ", " ", "1", "2", "3", "4", "5", "6", "7",
                          " x", "\n\n", " ", " y", "\t", "\tz", "!!\r\n", " ok", " 中文abc", "  "));
  EXPECT_THAT(Pieces(hf::SplitPattern::kGpt2, text),
              ElementsAre("Hello", " WORLD", "'", "S", " ", " 1234567", " x", "\n\n ", " y", "\t",
                          "\t", "z", "!!", "\r\n", " ok", " 中文abc", "  "));
}

TEST(HfSplitTest, PiecesCoverInvalidUtf8) {
  const std::string text = "a\xff\xfe b\xc3";
  std::string joined;
  for (const std::string& piece : Pieces(hf::SplitPattern::kLlama3, text)) joined += piece;
  EXPECT_EQ(joined, text);
}

TEST(HfSplitTest, RecognisesOnlyTheKnownRegexes) {
  EXPECT_EQ(hf::RecognizeSplitPattern(kLlama3Regex), hf::SplitPattern::kLlama3);
  EXPECT_FALSE(hf::RecognizeSplitPattern(R"(\w+|\s+)").has_value());
}

TEST(HfTokenizerTest, ByteLevelMergesByRank) {
  std::unique_ptr<HfTokenizer> tok = Make(ByteLevelTokenizer(), {{"eos_token", "<|end|>"}});
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("hello"), ElementsAre(258, 'o'));
  EXPECT_THAT(tok->Encode(" hello"), ElementsAre(' ', 258, 'o'));
  EXPECT_THAT(tok->Encode("hhe"), ElementsAre('h', 256));
  EXPECT_TRUE(tok->Encode("").empty());
  EXPECT_EQ(tok->Decode(tok->Encode(" hello\n\tworld ")), " hello\n\tworld ");
  // The per-word cache gives the same answer the second time.
  EXPECT_THAT(tok->Encode("hello"), ElementsAre(258, 'o'));
}

TEST(HfTokenizerTest, AddedTokensAreSplitOutAndSpecialOnesDroppedByDecode) {
  std::unique_ptr<HfTokenizer> tok = Make(ByteLevelTokenizer(), {{"eos_token", "<|end|>"}});
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("a<|end|>b"), ElementsAre('a', 300, 'b'));
  EXPECT_EQ(tok->Decode({'a', 300, 'b'}), "ab");
  // lstrip / rstrip swallow the whitespace around <tool>; it is not special, so decode keeps it.
  EXPECT_THAT(tok->Encode("x  <tool>  y"), ElementsAre('x', 301, 'y'));
  EXPECT_EQ(tok->Decode({'x', 301, 'y'}), "x<tool>y");
  EXPECT_THAT(tok->Encode("<|end"), ElementsAre('<', '|', 'e', 'n', 'd'));
}

TEST(HfTokenizerTest, ByteLevelRoundTripsInvalidUtf8AndDropsUnknownIds) {
  std::unique_ptr<HfTokenizer> tok = Make(ByteLevelTokenizer(), {{"eos_token", "<|end|>"}});
  ASSERT_NE(tok, nullptr);
  const std::string text = "\xff\xfe ok \xc3 caf\xc3\xa9";
  EXPECT_EQ(tok->Decode(tok->Encode(text)), text);
  EXPECT_EQ(tok->Decode({-1, 'h', 299, 100000, 'i'}), "hi");
}

TEST(HfTokenizerTest, SpecialIdsAndVocabSizeComeFromTheConfig) {
  std::unique_ptr<HfTokenizer> tok = Make(ByteLevelTokenizer(), {{"eos_token", "<|end|>"}});
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 302);
  EXPECT_EQ(tok->eos_id(), 300);
  EXPECT_EQ(tok->pad_id(), 300);  // no pad_token: eos
  EXPECT_EQ(tok->bos_id(), 300);  // no bos_token: pad
  EXPECT_FALSE(tok->add_bos_token());
  EXPECT_FALSE(static_cast<const Tokenizer&>(*tok).add_bos());  // what EncodeQa and Generate ask
  EXPECT_EQ(tok->TokenId("<tool>"), 301);
  EXPECT_EQ(tok->TokenId("hell"), 258);
  EXPECT_FALSE(tok->TokenId("nope").has_value());

  std::unique_ptr<HfTokenizer> with_objects =
      Make(ByteFallbackTokenizer(), {{"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}},
                                     {"eos_token", "</s>"},
                                     {"pad_token", nullptr},
                                     {"add_bos_token", true},
                                     {"chat_template", kLlama2Signature}});
  ASSERT_NE(with_objects, nullptr);
  EXPECT_EQ(with_objects->bos_id(), 1);
  EXPECT_EQ(with_objects->eos_id(), 2);
  EXPECT_EQ(with_objects->pad_id(), 2);
  EXPECT_TRUE(with_objects->add_bos_token());
  EXPECT_TRUE(static_cast<const Tokenizer&>(*with_objects).add_bos());
  EXPECT_EQ(with_objects->chat_template(), kLlama2Signature);
}

// The QA layout (what EncodeQa, verification and qa_format queries use) follows the chat format of
// tokenizer_config.json; without one it is the plain "Question: ...\nAnswer: " + answer + EOS; a
// template that is not recognised is refused at load, naming the key and what to do.
TEST(HfTokenizerTest, QaLayoutFollowsTheChatTemplateAndAnUnknownTemplateIsRefused) {
  std::unique_ptr<HfTokenizer> plain =
      Make(ByteFallbackTokenizer(), {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->chat_format(), nullptr);
  EXPECT_EQ(plain->QaPromptText("Who?"), "Question: Who?\nAnswer: ");
  EXPECT_EQ(plain->QaAnswerText(" Ann "), " Ann ");
  EXPECT_EQ(plain->QaAnswerEnd(), "");  // the EOS token follows

  std::unique_ptr<HfTokenizer> llama2 =
      Make(ByteFallbackTokenizer(),
           {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"chat_template", kLlama2Signature}});
  ASSERT_NE(llama2, nullptr);
  ASSERT_NE(llama2->chat_format(), nullptr);
  EXPECT_EQ(llama2->chat_format()->name(), "llama2");
  EXPECT_EQ(llama2->QaPromptText("Who?"), "[INST] Who? [/INST]");
  // The template writes " Ann </s>"; the leading space comes from the Prepend normalizer when the
  // answer is encoded on its own.
  EXPECT_EQ(llama2->QaAnswerText(" Ann "), "Ann");
  EXPECT_EQ(llama2->QaAnswerEnd(), " </s>");

  absl::StatusOr<std::unique_ptr<HfTokenizer>> unknown = HfTokenizer::FromJson(
      ByteFallbackTokenizer().dump(),
      json{{"eos_token", "</s>"}, {"chat_template", "{{ messages }}"}}.dump(), "test");
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kInvalidArgument,
                                AllOf(HasSubstr("tokenizer_config.json: chat_template"),
                                      HasSubstr("remove chat_template"))));
}

TEST(HfTokenizerTest, SentencePieceBpeWithByteFallback) {
  std::unique_ptr<HfTokenizer> tok =
      Make(ByteFallbackTokenizer(), {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("ab"), ElementsAre(264));
  // "▁a▁é": é is not in the vocabulary, so its two bytes become <0xC3> <0xA9>.
  EXPECT_THAT(tok->Encode("a é"), ElementsAre(262, 259, 3 + 0xC3, 3 + 0xA9));
  EXPECT_EQ(tok->Decode({262, 259, 3 + 0xC3, 3 + 0xA9}), "a é");
  EXPECT_EQ(tok->Decode({1, 264, 2}), "ab");
  EXPECT_EQ(tok->Decode(tok->Encode("  ab b😀")), "  ab b😀");
  // Each section between added tokens gets its own "▁" (as Hugging Face's normalizer does).
  EXPECT_THAT(tok->Encode("a</s>a"), ElementsAre(262, 2, 262));
}

TEST(HfTokenizerTest, SaveWritesTheFilesBackAndLoadReadsThem) {
  const std::string dir =
      (std::filesystem::path(::testing::TempDir()) / ("hftok_" + std::to_string(::getpid())))
          .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string tokenizer_json = ByteLevelTokenizer().dump(1);
  const std::string config_json = json{{"eos_token", "<|end|>"}}.dump();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<HfTokenizer> tok,
                           HfTokenizer::FromJson(tokenizer_json, config_json, "test"));
  UNL_ASSERT_OK(tok->Save(dir));
  std::ifstream in(dir + "/tokenizer.json");
  std::stringstream saved;
  saved << in.rdbuf();
  EXPECT_EQ(saved.str(), tokenizer_json);
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<HfTokenizer> loaded, HfTokenizer::Load(dir));
  EXPECT_EQ(loaded->Encode("hello world"), tok->Encode("hello world"));
  std::filesystem::remove(dir + "/tokenizer_config.json");
  EXPECT_THAT(HfTokenizer::Load(dir),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tokenizer_config.json")));
  std::filesystem::remove_all(dir);
}

TEST(HfTokenizerTest, ConcurrentEncodesAgreeWithASerialOne) {
  std::unique_ptr<HfTokenizer> tok = Make(ByteLevelTokenizer(), {{"eos_token", "<|end|>"}});
  ASSERT_NE(tok, nullptr);
  std::vector<std::string> texts;
  for (int i = 0; i < 300; ++i) {
    texts.push_back("hello " + std::to_string(i * 7919) + " hell\tworld<|end|> " +
                    std::string(static_cast<size_t>(i % 13), 'l') + " \xf0\x9f\x98\x80");
  }
  std::vector<std::vector<int64_t>> serial;
  for (const std::string& text : texts) serial.push_back(tok->Encode(text));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          mismatches[t] += tok->Encode(texts[(i + t * 31) % texts.size()]) !=
                           serial[(i + t * 31) % texts.size()];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

struct BadCase {
  const char* name;
  void (*mutate)(json& tokenizer, json& config);
  const char* message;
};

TEST(HfTokenizerTest, BadFilesAreInvalidArgumentNamingTheKey) {
  const BadCase cases[] = {
      {"unigram", [](json& t, json&) { t["model"]["type"] = "Unigram"; }, "model.type"},
      {"no model", [](json& t, json&) { t.erase("model"); }, "model: missing"},
      {"no vocab", [](json& t, json&) { t["model"].erase("vocab"); }, "model.vocab"},
      {"negative id", [](json& t, json&) { t["model"]["vocab"]["he"] = -4; },
       "model.vocab[\"he\"]"},
      {"sparse ids", [](json& t, json&) { t["model"]["vocab"]["he"] = 1 << 23; }, "not dense"},
      {"bad merge", [](json& t, json&) { t["model"]["merges"][1] = "l zz"; }, "model.merges[1]"},
      {"merge type", [](json& t, json&) { t["model"]["merges"][0] = 5; }, "model.merges[0]"},
      {"dropout", [](json& t, json&) { t["model"]["dropout"] = 0.1; }, "model.dropout"},
      {"normalizer",
       [](json& t, json&) {
         t["normalizer"] = {{"type", "Lowercase"}};
       },
       "normalizer.type: normalizer \"Lowercase\" is not supported"},
      {"regex",
       [](json& t, json&) { t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+"; },
       "pre_tokenizer.pretokenizers[0].pattern.Regex"},
      {"metaspace",
       [](json& t, json&) {
         t["pre_tokenizer"] = {{"type", "Metaspace"}};
       },
       "pre-tokenizer \"Metaspace\" is not supported"},
      {"decoder",
       [](json& t, json&) {
         t["decoder"] = {{"type", "WordPiece"}};
       },
       "decoder.type: decoder \"WordPiece\""},
      {"added content", [](json& t, json&) { t["added_tokens"][0]["content"] = 7; },
       "added_tokens[0].content"},
      {"single word", [](json& t, json&) { t["added_tokens"][1]["single_word"] = true; },
       "added_tokens[1].single_word"},
      {"eos unknown", [](json&, json& c) { c["eos_token"] = "<nope>"; }, "eos_token"},
      {"eos missing", [](json&, json& c) { c.erase("eos_token"); }, "eos_token: missing"},
      {"bos type", [](json&, json& c) { c["bos_token"] = 3; }, "bos_token"},
      {"add_bos type", [](json&, json& c) { c["add_bos_token"] = "yes"; }, "add_bos_token"},
  };
  for (const BadCase& bad : cases) {
    json tokenizer = ByteLevelTokenizer();
    json config = {{"eos_token", "<|end|>"}};
    bad.mutate(tokenizer, config);
    EXPECT_THAT(HfTokenizer::FromJson(tokenizer.dump(), config.dump(), "dir"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad.message)))
        << bad.name;
  }
  EXPECT_THAT(HfTokenizer::FromJson("{\"model\": ", "{}", "dir"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("dir/tokenizer.json"), HasSubstr("not valid JSON"))));
  EXPECT_THAT(HfTokenizer::FromJson(ByteLevelTokenizer().dump(), "[", "dir"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dir/tokenizer_config.json")));
}

TEST(HfTokenizerTest, DeeplyNestedSequencesAreRefused) {
  // 100,000 nested decoder Sequences, written as text (json::dump would recurse that deep).
  constexpr int kDepth = 100000;
  std::string decoder;
  for (int i = 0; i < kDepth; ++i) decoder += R"({"type": "Sequence", "decoders": [)";
  decoder += R"({"type": "ByteLevel"})";
  for (int i = 0; i < kDepth; ++i) decoder += "]}";
  json tokenizer = ByteLevelTokenizer();
  tokenizer["decoder"] = "@DECODER@";
  std::string text = tokenizer.dump();
  text.replace(text.find("\"@DECODER@\""), 11, decoder);
  EXPECT_THAT(HfTokenizer::FromJson(text, R"({"eos_token": "<|end|>"})", "dir"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested too deeply")));
}

TEST(HfTokenizerTest, TruncatedFilesNeverCrash) {
  const std::string full = ByteFallbackTokenizer().dump();
  for (size_t n = 0; n < full.size(); n += 97) {
    EXPECT_FALSE(HfTokenizer::FromJson(full.substr(0, n), "{\"eos_token\": \"</s>\"}", "t").ok());
  }
}

}  // namespace
}  // namespace unlearning::core
