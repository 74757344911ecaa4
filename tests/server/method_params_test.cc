// Proto method parameters become the method registry's JSON: only the fields a caller set, so
// the method's own defaults apply to the rest and the certificate records what was asked.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/methods/method_registry.h"
#include "server/proto_convert.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

TEST(MethodParamsToJsonTest, FlatGoodAnswersAndScheduleReachTheMethod) {
  v1::MethodParams params;
  params.mutable_flat();
  nlohmann::json json = MethodParamsToJson(params);
  EXPECT_FALSE(json.contains("good_answers"));
  EXPECT_FALSE(json.contains("lr_schedule"));
  UNL_ASSERT_OK_AND_ASSIGN(auto defaults, core::MethodRegistry::Builtin().Create("flat", json));
  EXPECT_EQ(defaults->EffectiveParams()["good_answers"], "templates");
  EXPECT_EQ(defaults->EffectiveParams()["lr_schedule"], "warmup_linear");

  params.mutable_flat()->set_good_answers(v1::FlatParams::GOOD_ANSWERS_RETAIN);
  params.mutable_flat()->set_lr_schedule(v1::FlatParams::LR_SCHEDULE_CONSTANT);
  json = MethodParamsToJson(params);
  UNL_ASSERT_OK_AND_ASSIGN(auto method, core::MethodRegistry::Builtin().Create("flat", json));
  EXPECT_EQ(method->EffectiveParams()["good_answers"], "retain");
  EXPECT_EQ(method->EffectiveParams()["lr_schedule"], "constant");
}

}  // namespace
}  // namespace unlearning::server
