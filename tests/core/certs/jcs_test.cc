#include "core/certs/jcs.h"

#include <cstdint>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

namespace unlearning::core::certs {
namespace {

double FromBits(uint64_t bits) {
  double d = 0;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::string Canon(const std::string& text) {
  auto out = CanonicalJson(nlohmann::json::parse(text));
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

// RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript / JCS text.
TEST(JcsTest, NumberVectorsOfRfc8785AppendixB) {
  const struct {
    uint64_t bits;
    const char* text;
  } kVectors[] = {
      {0x0000000000000000, "0"},
      {0x8000000000000000, "0"},
      {0x0000000000000001, "5e-324"},
      {0x8000000000000001, "-5e-324"},
      {0x7fefffffffffffff, "1.7976931348623157e+308"},
      {0xffefffffffffffff, "-1.7976931348623157e+308"},
      {0x4340000000000000, "9007199254740992"},
      {0xc340000000000000, "-9007199254740992"},
      {0x4430000000000000, "295147905179352830000"},
      {0x44b52d02c7e14af5, "9.999999999999997e+22"},
      {0x44b52d02c7e14af6, "1e+23"},
      {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
      {0x444b1ae4d6e2ef4e, "999999999999999700000"},
      {0x444b1ae4d6e2ef4f, "999999999999999900000"},
      {0x444b1ae4d6e2ef50, "1e+21"},
      {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
      {0x3eb0c6f7a0b5ed8d, "0.000001"},
      {0x41b3de4355555553, "333333333.3333332"},
      {0x41b3de4355555554, "333333333.33333325"},
      {0x41b3de4355555555, "333333333.3333333"},
      {0x41b3de4355555556, "333333333.3333334"},
      {0x41b3de4355555557, "333333333.33333343"},
      {0xbecbf647612f3696, "-0.0000033333333333333333"},
      {0x43143ff3c1cb0959, "1424953923781206.2"},
  };
  for (const auto& v : kVectors) {
    auto text = EcmaScriptNumber(FromBits(v.bits));
    ASSERT_TRUE(text.ok()) << std::hex << v.bits;
    EXPECT_EQ(*text, v.text) << std::hex << v.bits;
    // The same through a JSON document.
    EXPECT_EQ(*CanonicalJson(nlohmann::json(FromBits(v.bits))), v.text);
  }
}

TEST(JcsTest, NanAndInfinityHaveNoForm) {
  EXPECT_EQ(EcmaScriptNumber(std::numeric_limits<double>::quiet_NaN()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CanonicalJson(nlohmann::json(std::numeric_limits<double>::infinity())).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JcsTest, IntegersExactUpTo2To53ThenAsDoubles) {
  EXPECT_EQ(Canon("[0, -1, 42, 9007199254740992, -9007199254740992]"),
            "[0,-1,42,9007199254740992,-9007199254740992]");
  // Beyond 2^53 a JavaScript parser holds the nearest double.
  EXPECT_EQ(Canon("[9007199254740993, 18446744073709551615, -9223372036854775807]"),
            "[9007199254740992,18446744073709552000,-9223372036854776000]");
  EXPECT_EQ(Canon("[1.0, 4.50, 2e-3, 1E30, 1e21, 1e-7, 123e-20]"),
            "[1,4.5,0.002,1e+30,1e+21,1e-7,1.23e-18]");
}

// RFC 8785 section 3.2.3: the worked example.
TEST(JcsTest, Rfc8785WorkedExample) {
  const std::string input = R"({
    "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  })";
  EXPECT_EQ(Canon(input),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
            "\"string\":\"\xE2\x82\xAC$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

// RFC 8785 section 3.2.3: names sort by UTF-16 code units (the emoji's surrogate pair sorts
// before U+FB33, unlike in UTF-8 byte order).
TEST(JcsTest, NamesSortByUtf16CodeUnits) {
  const std::string input = R"({
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis"
  })";
  const nlohmann::json doc = nlohmann::json::parse(input);
  const std::string out = *CanonicalJson(doc);
  const nlohmann::json reparsed = nlohmann::json::parse(out);
  // Recover the order of the names from the canonical text itself.
  size_t pos = 0;
  for (const char* value :
       {"Carriage Return", "One", "Control",
        "Latin Small Letter O With "
        "Diaeresis",
        "Euro Sign", "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh"}) {
    const size_t at = out.find(value);
    ASSERT_NE(at, std::string::npos) << value;
    EXPECT_GT(at, pos) << value << " out of order in " << out;
    pos = at;
  }
  EXPECT_EQ(reparsed, doc);
}

TEST(JcsTest, StringsEscapeOnlyWhatJsonRequires) {
  nlohmann::json doc = std::string("a\x01\x1f\x7f/\xE2\x80\xA8<>&\t");
  EXPECT_EQ(*CanonicalJson(doc), "\"a\\u0001\\u001f\x7f/\xE2\x80\xA8<>&\\t\"");
}

TEST(JcsTest, InvalidUtf8IsRejected) {
  EXPECT_EQ(CanonicalJson(nlohmann::json(std::string("\xC3"))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CanonicalJson(nlohmann::json(std::string("\xED\xA0\x80"))).status().code(),
            absl::StatusCode::kInvalidArgument);  // an encoded surrogate
  nlohmann::json obj;
  obj[std::string("\xC0\xAF")] = 1;  // overlong '/'
  EXPECT_EQ(CanonicalJson(obj).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JcsTest, NestedStructuresHaveNoWhitespace) {
  EXPECT_EQ(Canon(R"({ "b" : [ {"z":1, "a":{}} , [] ], "a" : "" })"),
            R"({"a":"","b":[{"a":{},"z":1},[]]})");
}

}  // namespace
}  // namespace unlearning::core::certs
