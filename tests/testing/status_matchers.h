// gMock matchers for absl::Status / StatusOr (absl's own are newer than Debian 12's abseil).
#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace unlearning::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s.ToString();
  return s.ok();
}

MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

}  // namespace unlearning::testing

#define UNL_ASSERT_OK(expr) ASSERT_THAT((expr), ::unlearning::testing::IsOk())
#define UNL_EXPECT_OK(expr) EXPECT_THAT((expr), ::unlearning::testing::IsOk())
// Asserts `rexpr` (a StatusOr) is OK and moves its value into `lhs`.
#define UNL_ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  UNL_ASSERT_OK_AND_ASSIGN_IMPL_(UNL_TEST_CONCAT_(unl_test_sor_, __LINE__), lhs, rexpr)
#define UNL_TEST_CONCAT_INNER_(x, y) x##y
#define UNL_TEST_CONCAT_(x, y) UNL_TEST_CONCAT_INNER_(x, y)
#define UNL_ASSERT_OK_AND_ASSIGN_IMPL_(sor, lhs, rexpr) \
  auto sor = (rexpr);                                   \
  ASSERT_TRUE(sor.ok()) << sor.status().ToString();     \
  lhs = std::move(sor).value()
