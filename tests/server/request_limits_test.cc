// Every size limit of an erasure request (server/proto_convert.h RequestLimits, the request id,
// the compliance reference): exactly at the limit is accepted, one over is refused with the code
// and a message that names the limit. The gRPC message limit, the image batch limits and the
// token/context limits are tested where they live (tests/integration, classify_test, sample_test,
// tests/core/app/text_inference_test.cc).
#include <functional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/proto_convert.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

RequestLimits SmallLimits() {
  RequestLimits limits;
  limits.max_forget_examples = 4;
  limits.max_retain_examples = 6;
  limits.max_templates = 3;
  limits.max_text_bytes = 32;
  return limits;
}

v1::ErasureRequest TextRequest() {
  v1::ErasureRequest r;
  r.set_request_id("limits-1");
  r.set_model_id("lm");
  r.mutable_method()->mutable_flat();
  v1::TextExample* e = r.mutable_text()->add_forget_set();
  e->set_question("q");
  e->set_answer("a");
  return r;
}

struct Limit {
  std::string name;
  // Sets the request to `n` units (examples, bytes, characters) of the limited quantity.
  std::function<void(v1::ErasureRequest*, int)> set;
  int limit;
  absl::StatusCode code;
  std::string message;  // in the refusal
};

std::vector<Limit> Limits() {
  const RequestLimits l = SmallLimits();
  auto examples = [](google::protobuf::RepeatedPtrField<v1::TextExample>* set, int n) {
    set->Clear();
    for (int i = 0; i < n; ++i) {
      v1::TextExample* e = set->Add();
      e->set_question("q");
      e->set_answer("a");
    }
  };
  return {
      {"forget examples",
       [=](v1::ErasureRequest* r, int n) { examples(r->mutable_text()->mutable_forget_set(), n); },
       l.max_forget_examples, absl::StatusCode::kResourceExhausted,
       "this server accepts at most 4 per request (--max-forget-examples)"},
      {"retain examples",
       [=](v1::ErasureRequest* r, int n) { examples(r->mutable_text()->mutable_retain_set(), n); },
       l.max_retain_examples, absl::StatusCode::kResourceExhausted,
       "text.retain_set has 7 records; the limit is 6"},
      {"templates",
       [](v1::ErasureRequest* r, int n) {
         r->mutable_text()->clear_template_answers();
         for (int i = 0; i < n; ++i) r->mutable_text()->add_template_answers("no");
       },
       l.max_templates, absl::StatusCode::kResourceExhausted,
       "text.template_answers has 4 entries; the limit is 3"},
      {"question bytes",
       [](v1::ErasureRequest* r, int n) {
         r->mutable_text()->mutable_forget_set(0)->set_question(std::string(n, 'q'));
       },
       l.max_text_bytes, absl::StatusCode::kInvalidArgument,
       "text.forget_set[0].question is 33 bytes; the limit is 32"},
      {"answer bytes (multi-byte characters count as bytes)",
       [](v1::ErasureRequest* r, int n) {
         std::string s;
         for (int i = 0; i < n / 2; ++i) s += "\xc3\xa9";  // é
         if (n % 2 == 1) s += "a";
         r->mutable_text()->mutable_forget_set(0)->set_answer(s);
       },
       l.max_text_bytes, absl::StatusCode::kInvalidArgument,
       "text.forget_set[0].answer is 33 bytes; the limit is 32"},
      {"paraphrase bytes",
       [](v1::ErasureRequest* r, int n) {
         r->mutable_text()->mutable_forget_set(0)->add_paraphrased_questions(std::string(n, 'p'));
       },
       l.max_text_bytes, absl::StatusCode::kInvalidArgument,
       "text.forget_set[0].paraphrased_questions[0] is 33 bytes"},
      {"perturbed answer bytes",
       [](v1::ErasureRequest* r, int n) {
         r->mutable_text()->mutable_forget_set(0)->add_perturbed_answers(std::string(n, 'w'));
       },
       l.max_text_bytes, absl::StatusCode::kInvalidArgument,
       "text.forget_set[0].perturbed_answers[0] is 33 bytes"},
      {"retain answer bytes",
       [=](v1::ErasureRequest* r, int n) {
         examples(r->mutable_text()->mutable_retain_set(), 1);
         r->mutable_text()->mutable_retain_set(0)->set_answer(std::string(n, 'r'));
       },
       l.max_text_bytes, absl::StatusCode::kInvalidArgument,
       "text.retain_set[0].answer is 33 bytes; the limit is 32"},
      {"template bytes",
       [](v1::ErasureRequest* r, int n) {
         r->mutable_text()->add_template_answers(std::string(n, 't'));
       },
       l.max_text_bytes, absl::StatusCode::kInvalidArgument,
       "text.template_answers[0] is 33 bytes; the limit is 32"},
      {"request id characters",
       [](v1::ErasureRequest* r, int n) { r->set_request_id(std::string(n, 'i')); }, 128,
       absl::StatusCode::kInvalidArgument, "request_id must be 1 to 128 characters"},
      {"compliance reference bytes",
       [](v1::ErasureRequest* r, int n) { r->set_compliance_reference(std::string(n, 'c')); }, 1024,
       absl::StatusCode::kInvalidArgument, "compliance_reference is longer than 1024 bytes"},
  };
}

TEST(RequestLimits, EachLimitAcceptsItsValueAndRefusesOneMoreNamingTheLimit) {
  const RequestLimits limits = SmallLimits();
  for (const Limit& limit : Limits()) {
    SCOPED_TRACE(limit.name);
    v1::ErasureRequest at = TextRequest();
    limit.set(&at, limit.limit);
    EXPECT_TRUE(ValidateErasureRequest(at, limits).ok())
        << ValidateErasureRequest(at, limits).message();
    v1::ErasureRequest over = TextRequest();
    limit.set(&over, limit.limit + 1);
    EXPECT_THAT(ValidateErasureRequest(over, limits),
                StatusIs(limit.code, HasSubstr(limit.message)));
  }
}

}  // namespace
}  // namespace unlearning::server
