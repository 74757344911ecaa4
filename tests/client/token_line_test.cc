// unlearnctl token new|hash: the token-file line it prints, and the expiry flags (--expires,
// --valid-for) with the mistakes they refuse.
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <nlohmann/json.hpp>

#include "client/credentials.h"

namespace unlearning::client {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);  // 2027-01-15T08:00:00Z

TokenSpec Spec() {
  TokenSpec spec;
  spec.name = "dpo-bot";
  spec.roles = {"erase"};
  return spec;
}

TEST(TokenLineTest, ExpiryFromATimeOrADurationIsWrittenAsRfc3339Utc) {
  TokenSpec spec = Spec();
  EXPECT_EQ(*TokenExpiry(spec, kNow), "") << "no flag, no expiry";
  spec.expires = "2027-06-30T02:00:00+02:00";
  EXPECT_EQ(*TokenExpiry(spec, kNow), "2027-06-30T00:00:00Z");
  spec.expires.clear();
  spec.valid_for = "30d";
  EXPECT_EQ(*TokenExpiry(spec, kNow), "2027-02-14T08:00:00Z");
  spec.valid_for = "1h30m";
  EXPECT_EQ(*TokenExpiry(spec, kNow), "2027-01-15T09:30:00Z");

  const nlohmann::json line =
      nlohmann::json::parse(TokenLine(spec, "secret", "2027-01-15T09:30:00Z"));
  EXPECT_EQ(line["name"], "dpo-bot");
  EXPECT_EQ(line["expires"], "2027-01-15T09:30:00Z");
  EXPECT_EQ(line["sha256"].get<std::string>().size(), 64u);
  EXPECT_FALSE(nlohmann::json::parse(TokenLine(spec, "secret", "")).contains("expires"));
}

TEST(TokenLineTest, MalformedPastOrDoubleExpiriesAreRefusedNamingTheFlag) {
  struct Case {
    std::string expires, valid_for, says;
  };
  for (const Case& c : {
           Case{"tomorrow", "", "--expires must be an RFC 3339 time"},
           Case{"2026-01-01T00:00:00Z", "", "is not in the future"},
           Case{"", "0d", "--valid-for must be a positive duration"},
           Case{"", "-5h", "--valid-for must be a positive duration"},
           Case{"", "soon", "--valid-for must be a positive duration"},
           Case{"2027-06-30T00:00:00Z", "30d", "not both"},
       }) {
    TokenSpec spec = Spec();
    spec.expires = c.expires;
    spec.valid_for = c.valid_for;
    absl::StatusOr<std::string> at = TokenExpiry(spec, kNow);
    ASSERT_FALSE(at.ok()) << c.expires << " / " << c.valid_for;
    EXPECT_EQ(at.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(at.status().message()), HasSubstr(c.says));
  }
}

}  // namespace
}  // namespace unlearning::client
