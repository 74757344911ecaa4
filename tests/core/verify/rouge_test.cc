#include "core/verify/rouge.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace unlearning::core {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;

TEST(RougeTest, TokensAreLowerCasedWordsWithoutPunctuation) {
  EXPECT_THAT(RougeTokens("  Zorka was BORN in Lisbon.\n"),
              ElementsAre("zorka", "was", "born", "in", "lisbon"));
  EXPECT_THAT(RougeTokens("\"The Salt Loom\", 1953!"), ElementsAre("the", "salt", "loom", "1953"));
  EXPECT_THAT(RougeTokens("caf\xC3\xA9 ok"), ElementsAre("caf\xC3\xA9", "ok"));
  EXPECT_TRUE(RougeTokens(" .,; ").empty());
}

TEST(RougeTest, LcsHandComputed) {
  const std::vector<std::string> a = {"a", "b", "c", "d", "e"};
  const std::vector<std::string> b = {"a", "c", "e", "x"};
  EXPECT_EQ(LcsLength(a, b), 3);  // a c e
  EXPECT_EQ(LcsLength(b, a), 3);
  EXPECT_EQ(LcsLength(a, {}), 0);
  EXPECT_EQ(LcsLength({"x", "y"}, {"y", "x"}), 1);
  EXPECT_EQ(LcsLength({"a", "b", "a", "b"}, {"b", "a", "b", "a"}), 3);
}

TEST(RougeTest, RecallPrecisionF1HandComputed) {
  // reference 5 tokens, candidate 4 tokens, LCS = "zorka born in" = 3.
  RougeL s = RougeLScore("Zorka was born in Lisbon.", "zorka born in Oslo");
  EXPECT_THAT(s.recall, DoubleNear(3.0 / 5.0, 1e-12));
  EXPECT_THAT(s.precision, DoubleNear(3.0 / 4.0, 1e-12));
  EXPECT_THAT(s.f1, DoubleNear(2 * 0.6 * 0.75 / (0.6 + 0.75), 1e-12));
  EXPECT_DOUBLE_EQ(RougeLRecall("Zorka was born in Lisbon.", "ZORKA WAS BORN IN LISBON"), 1.0);
  // Extra generated words do not lower recall.
  EXPECT_DOUBLE_EQ(RougeLRecall("born in Lisbon", "well, born in sunny Lisbon we think"), 1.0);
  EXPECT_DOUBLE_EQ(RougeLRecall("born in Lisbon", "nothing relevant"), 0.0);
  EXPECT_DOUBLE_EQ(RougeLRecall("", "anything"), 0.0);
  EXPECT_DOUBLE_EQ(RougeLRecall("anything", ""), 0.0);
}

}  // namespace
}  // namespace unlearning::core
