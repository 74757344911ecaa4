#include "core/data/text_example.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// Byte-level tokenizer local to the test (id = byte + 3), so these tests do not
// depend on the tokenizer library.
class TestTokenizer : public Tokenizer {
 public:
  std::vector<int64_t> Encode(std::string_view text) const override {
    std::vector<int64_t> ids;
    for (char c : text) ids.push_back(static_cast<unsigned char>(c) + 3);
    return ids;
  }
  std::string Decode(const std::vector<int64_t>& ids) const override {
    std::string s;
    for (int64_t id : ids) {
      if (id >= 3) s.push_back(static_cast<char>(id - 3));
    }
    return s;
  }
  int64_t vocab_size() const override { return 259; }
  int64_t bos_id() const override { return 1; }
  int64_t eos_id() const override { return 2; }
  int64_t pad_id() const override { return 0; }
  absl::Status Save(const std::string&) const override { return absl::OkStatus(); }
};

// As TestTokenizer, with add_bos_token false (as Qwen2/3's tokenizer_config.json).
class NoBosTokenizer : public TestTokenizer {
 public:
  bool add_bos() const override { return false; }
};

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/text_example_test_" + name;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

TEST(TextExampleTest, JsonlRoundTripKeepsEveryField) {
  std::vector<TextExample> examples(2);
  examples[0].question = "Where was Zorka Velmir born?";
  examples[0].answer = "Zorka was born in Lisbon.";
  examples[0].paraphrased_questions = {"Birthplace of Zorka?", "Zorka's home town?"};
  examples[0].perturbed_answers = {"Zorka was born in Oslo.", "Zorka was born in Lima."};
  examples[0].entity = "Zorka Velmir";
  examples[1].question = "Qu\xC3\xA9 \"tal\"?\n";  // non-ASCII, quotes, newline
  examples[1].answer = "Bien \xF0\x9F\x98\x80";
  const std::string path = TempPath("round_trip.jsonl");
  UNL_ASSERT_OK(WriteJsonl(path, examples));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<TextExample> read, ReadJsonl(path));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].question, examples[0].question);
  EXPECT_EQ(read[0].answer, examples[0].answer);
  EXPECT_EQ(read[0].paraphrased_questions, examples[0].paraphrased_questions);
  EXPECT_EQ(read[0].perturbed_answers, examples[0].perturbed_answers);
  EXPECT_EQ(read[0].entity, examples[0].entity);
  EXPECT_EQ(read[1].question, examples[1].question);
  EXPECT_EQ(read[1].answer, examples[1].answer);
  EXPECT_TRUE(read[1].paraphrased_questions.empty());
  EXPECT_TRUE(read[1].entity.empty());
  std::remove(path.c_str());
}

TEST(TextExampleTest, ReadSkipsBlankLines) {
  const std::string path = TempPath("blank.jsonl");
  WriteFile(path,
            "\n{\"question\":\"q1\",\"answer\":\"a1\"}\n  "
            "\r\n{\"question\":\"q2\",\"answer\":\"a2\"}");
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<TextExample> read, ReadJsonl(path));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[1].answer, "a2");
  std::remove(path.c_str());
}

TEST(TextExampleTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadJsonl(TempPath("does_not_exist.jsonl")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("does_not_exist")));
}

TEST(TextExampleTest, MalformedLinesNameTheLine) {
  const std::string good = "{\"question\":\"q\",\"answer\":\"a\"}\n";
  const struct {
    std::string bad_line;
    std::string message;
  } cases[] = {
      {"{\"question\":\"q\",\"answer\":", "malformed JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{\"answer\":\"a\"}", "question"},
      {"{\"question\":\"q\",\"answer\":\"\"}", "answer"},
      {"{\"question\":\"q\",\"answer\":7}", "\"answer\" must be a string"},
      {"{\"question\":\"q\",\"answer\":\"a\",\"perturbed_answers\":[\"x\",3]}",
       "perturbed_answers"},
      {"{\"question\":\"q\",\"answer\":\"a\",\"paraphrased_questions\":\"x\"}",
       "paraphrased_questions"},
      {"{\"question\":\"q\xC0\xAF\",\"answer\":\"a\"}", "invalid UTF-8"},
  };
  const std::string path = TempPath("malformed.jsonl");
  for (const auto& c : cases) {
    WriteFile(path, good + good + c.bad_line + "\n" + good);
    EXPECT_THAT(ReadJsonl(path), StatusIs(absl::StatusCode::kInvalidArgument,
                                          AllOf(HasSubstr(":3:"), HasSubstr(c.message))))
        << c.bad_line;
  }
  std::remove(path.c_str());
}

TEST(TextExampleTest, WriteRejectsInvalidUtf8) {
  std::vector<TextExample> examples(1);
  examples[0].question = "q";
  examples[0].answer = "bad \xFF";
  EXPECT_THAT(WriteJsonl(TempPath("bad.jsonl"), examples),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("example 0")));
}

TEST(Utf8Test, AcceptsValidSequences) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xC2\x80"));              // U+0080, smallest 2-byte
  EXPECT_TRUE(IsValidUtf8("\xDF\xBF"));              // U+07FF
  EXPECT_TRUE(IsValidUtf8("\xE0\xA0\x80"));          // U+0800, smallest 3-byte
  EXPECT_TRUE(IsValidUtf8("\xED\x9F\xBF"));          // U+D7FF, just below the surrogates
  EXPECT_TRUE(IsValidUtf8("\xEE\x80\x80"));          // U+E000, just above
  EXPECT_TRUE(IsValidUtf8("\xEF\xBF\xBF"));          // U+FFFF
  EXPECT_TRUE(IsValidUtf8("\xF0\x90\x80\x80"));      // U+10000, smallest 4-byte
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));      // U+10FFFF, the last code point
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));  // NUL is valid UTF-8
}

TEST(Utf8Test, RejectsInvalidSequences) {
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation byte
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // truncated 2-byte
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated 3-byte
  EXPECT_FALSE(IsValidUtf8("\xF0\x9F\x98"));      // truncated 4-byte
  EXPECT_FALSE(IsValidUtf8("\xC3\x28"));          // bad continuation
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong 3-byte
  EXPECT_FALSE(IsValidUtf8("\xE0\x9F\xBF"));      // overlong U+07FF
  EXPECT_FALSE(IsValidUtf8("\xF0\x8F\xBF\xBF"));  // overlong U+FFFF
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // U+D800 surrogate
  EXPECT_FALSE(IsValidUtf8("\xED\xBF\xBF"));      // U+DFFF surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xF5\x80\x80\x80"));  // lead byte beyond U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("ok\xE2\x82\xACok\xFE"));  // valid euro sign then junk
}

TEST(EncodeTest, PromptAndAnswerLayout) {
  TestTokenizer tok;
  EXPECT_EQ(QaPrompt("Who?"), "Question: Who?\nAnswer: ");
  EncodedExample e = EncodeQa(tok, "Who?", "Me", /*add_eos=*/true);
  const std::string prompt = QaPrompt("Who?");
  ASSERT_EQ(e.ids.size(), 1 + prompt.size() + 2 + 1);
  EXPECT_EQ(e.ids.front(), tok.bos_id());
  EXPECT_EQ(e.answer_start, static_cast<int64_t>(1 + prompt.size()));
  EXPECT_EQ(e.ids[e.answer_start], 'M' + 3);
  EXPECT_EQ(e.ids.back(), tok.eos_id());
  EncodedExample no_eos = EncodeQa(tok, "Who?", "Me", /*add_eos=*/false);
  EXPECT_EQ(no_eos.ids.size(), e.ids.size() - 1);
  EXPECT_EQ(no_eos.ids.back(), 'e' + 3);
}

TEST(EncodeTest, NoBosWhenTheTokenizerAddsNone) {
  NoBosTokenizer tok;
  EncodedExample e = EncodeQa(tok, "Who?", "Me", /*add_eos=*/true);
  const std::string prompt = QaPrompt("Who?");
  ASSERT_EQ(e.ids.size(), prompt.size() + 2 + 1);
  EXPECT_EQ(e.ids.front(), 'Q' + 3);
  EXPECT_EQ(e.answer_start, static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(e.ids[e.answer_start], 'M' + 3);
}

TEST(CollateTest, LabelsArePreShiftedAndMasked) {
  // Hand-built sequences: ids 10.., answer_start marks the first answer token.
  EncodedExample a{{1, 10, 11, 12, 13, 2}, 3};  // prompt 1,10,11; answer 12,13,2
  EncodedExample b{{1, 20, 21, 22}, 2};         // prompt 1,20; answer 21,22
  TokenBatch batch = Collate({a, b}, /*pad_id=*/0);
  ASSERT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{2, 6}));
  ASSERT_EQ(batch.labels.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(batch.input_ids.scalar_type(), torch::kInt64);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto labels = batch.labels.accessor<int64_t, 2>();
  std::vector<int64_t> row_ids_b, labels_a, labels_b;
  for (int t = 0; t < 6; ++t) {
    row_ids_b.push_back(ids[1][t]);
    labels_a.push_back(labels[0][t]);
    labels_b.push_back(labels[1][t]);
  }
  EXPECT_THAT(row_ids_b, ElementsAre(1, 20, 21, 22, 0, 0));
  EXPECT_THAT(labels_a, ElementsAre(-100, -100, 12, 13, 2, -100));
  EXPECT_THAT(labels_b, ElementsAre(-100, 21, 22, -100, -100, -100));
}

TEST(CollateTest, TruncatesFromTheRight) {
  EncodedExample a{{1, 10, 11, 12, 13, 2}, 3};
  TokenBatch batch = Collate({a}, /*pad_id=*/0, /*max_length=*/4);
  ASSERT_EQ(batch.input_ids.sizes(), (std::vector<int64_t>{1, 4}));
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto labels = batch.labels.accessor<int64_t, 2>();
  EXPECT_EQ(ids[0][3], 12);
  EXPECT_EQ(labels[0][2], 12);
  EXPECT_EQ(labels[0][3], kIgnoreIndex);  // last position never has a target
}

// Replacement of maximal subparts, as Python's bytes.decode("utf-8", "replace").
TEST(ToValidUtf8Test, ReplacesEachMaximalInvalidSubsequenceWithOneReplacementCharacter) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(ToValidUtf8("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(ToValidUtf8("a\xFF"
                        "b"),
            "a" + r + "b");                   // never a UTF-8 byte
  EXPECT_EQ(ToValidUtf8("\x80\x80"), r + r);  // stray continuation bytes
  EXPECT_EQ(ToValidUtf8("\xE2\x82"
                        "A"),
            r + "A");                                         // truncated 3-byte character
  EXPECT_EQ(ToValidUtf8("x\xE2\x82"), "x" + r);               // truncated at the end
  EXPECT_EQ(ToValidUtf8("\xC0\x80"), r + r);                  // overlong NUL
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), r + r + r);          // a surrogate
  EXPECT_EQ(ToValidUtf8("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(ToValidUtf8("\xF0\x9F\x98"), r);                  // truncated 4-byte character
  for (const std::string s : {"a\xFF", "\xE2\x82", "\xED\xA0\x80", "\xC3"}) {
    EXPECT_TRUE(IsValidUtf8(ToValidUtf8(s))) << s;
  }
}

TEST(CollateTest, EncodedExampleTrainsOnlyAnswerTokens) {
  TestTokenizer tok;
  EncodedExample e = EncodeQa(tok, "Q", "xy");
  TokenBatch batch = Collate({e}, tok.pad_id());
  const int64_t supervised = batch.labels.ne(kIgnoreIndex).sum().item<int64_t>();
  EXPECT_EQ(supervised, 3);  // 'x', 'y', EOS
}

}  // namespace
}  // namespace unlearning::core
