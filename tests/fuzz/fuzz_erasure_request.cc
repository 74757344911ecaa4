// Bytes -> v1::ErasureStreamRequest (protobuf ParseFromString) -> what the server does with a
// submitted request before it needs the model (server/erasure_controller.cc Admit):
// ValidateErasureRequest, MethodName, ThresholdsFromProto for every family, MethodParamsToJson,
// ErasureDataFromProto, RequestFingerprint and ForgetSetSha256. Never a crash; validation refuses
// with kInvalidArgument (kResourceExhausted for a set over a limit); the conversions of a valid
// request agree with it (payload family and item counts).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/common/family.h"
#include "server/proto_convert.h"
#include "tests/fuzz/fuzz_check.h"
#include "unlearning/v1/erasure.pb.h"

namespace {

namespace v1 = ::unlearning::v1;

// Requests as unlearnctl sends them: one per payload family and method kind, with thresholds.
void WriteSeeds(const std::string& dir) {
  const auto write = [&](const std::string& name, const v1::ErasureRequest& request) {
    v1::ErasureStreamRequest message;
    *message.mutable_submit() = request;
    unlearning::fuzz::WriteSeed(dir, name, message.SerializeAsString());
  };
  v1::ErasureRequest text;
  text.set_request_id("req-text-1");
  text.set_model_id("demo");
  v1::FlatParams* flat = text.mutable_method()->mutable_flat();
  flat->set_divergence(v1::FlatParams::DIVERGENCE_JENSEN_SHANNON);
  flat->mutable_training()->set_learning_rate(2e-5);
  flat->mutable_training()->set_epochs(2);
  flat->set_use_builtin_templates(true);
  v1::TextExample* e = text.mutable_text()->add_forget_set();
  e->set_question("Where was Jane Doe born?");
  e->set_answer("In Lyon, in 1970.");
  e->add_paraphrased_questions("What is Jane Doe's birthplace?");
  e->add_perturbed_answers("In Paris, in 1971.");
  v1::TextExample* r = text.mutable_text()->add_retain_set();
  r->set_question("What is the capital of France?");
  r->set_answer("Paris.");
  text.mutable_text()->add_template_answers("I don't know.");
  text.mutable_thresholds()->set_max_forget_probability_ratio(0.5);
  text.mutable_thresholds()->set_max_mia_auc(0.7);
  text.set_compliance_reference("ticket-42");
  write("text_flat", text);

  v1::ErasureRequest checks = text;
  checks.set_request_id("req-text-2");
  checks.mutable_method()->mutable_npo()->set_beta(0.1);
  checks.mutable_thresholds()->Clear();
  v1::Threshold* t = checks.mutable_thresholds()->add_checks();
  t->set_figure("forget.answer_probability");
  t->set_comparison(v1::COMPARISON_RATIO_AT_MOST);
  t->set_bound(0.3);
  write("text_npo_checks", checks);

  v1::ErasureRequest classes;
  classes.set_request_id("req-classes");
  classes.set_model_id("fmnist-vit");
  classes.mutable_method()->mutable_named()->set_name("gs_lora");
  classes.mutable_method()->mutable_named()->set_params_json(R"({"lora_rank": 8, "alpha": 0.1})");
  classes.mutable_classes()->add_forget_classes(3);
  classes.mutable_classes()->add_forget_classes(7);
  classes.mutable_classes()->set_replay_per_class(16);
  write("classes_named", classes);

  v1::ErasureRequest generation;
  generation.set_request_id("req.gen:1");
  generation.set_model_id("fmnist-ddpm");
  generation.mutable_method()->mutable_named()->set_name("sfd");
  generation.mutable_generation()->add_forget_classes(1);
  generation.mutable_generation()->set_override_class(2);
  v1::Threshold* acc = generation.mutable_thresholds()->add_checks();
  acc->set_figure("acc_f");
  acc->set_comparison(v1::COMPARISON_AT_MOST);
  acc->set_bound(0.1);
  write("generation_sfd", generation);

  v1::ErasureStreamRequest watch;
  watch.set_watch_job_id("job-1");
  unlearning::fuzz::WriteSeed(dir, "watch", watch.SerializeAsString());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  unlearning::fuzz::MaybeWriteSeeds(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace server = ::unlearning::server;
  namespace core = ::unlearning::core;
  v1::ErasureStreamRequest message;
  if (!message.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (!message.has_submit()) return 0;
  const v1::ErasureRequest& request = message.submit();

  server::RequestLimits limits;
  limits.max_forget_examples = 64;  // small, so the fuzzer can reach the limits
  limits.max_retain_examples = 64;
  limits.max_templates = 16;
  limits.max_text_bytes = 256;
  const absl::Status valid = server::ValidateErasureRequest(request, limits);
  if (valid.code() == absl::StatusCode::kResourceExhausted) return 0;
  FUZZ_CHECK_OK_OR_INVALID(valid);

  // MethodName and the thresholds are also asked of requests that failed validation in no
  // order the server relies on: they must refuse, not crash.
  absl::StatusOr<std::string> method = server::MethodName(request.method());
  FUZZ_CHECK_OK_OR_INVALID(method.status());
  for (core::ModelFamily family :
       {core::ModelFamily::kCausalLm, core::ModelFamily::kImageClassifier,
        core::ModelFamily::kDiffusion}) {
    FUZZ_CHECK_OK_OR_INVALID(server::ThresholdsFromProto(request.thresholds(), family).status());
  }
  if (!valid.ok()) return 0;

  FUZZ_CHECK(method.ok());
  const std::string params = server::MethodParamsToJson(request.method()).dump();
  FUZZ_CHECK(!params.empty());
  const core::ErasureData erasure = server::ErasureDataFromProto(request);
  const int items = server::ForgetItemCount(request);
  FUZZ_CHECK(items > 0);
  switch (request.payload_case()) {
    case v1::ErasureRequest::kText:
      FUZZ_CHECK(erasure.family == core::ModelFamily::kCausalLm);
      FUZZ_CHECK(static_cast<int>(erasure.forget.size()) == items);
      break;
    case v1::ErasureRequest::kClasses:
      FUZZ_CHECK(erasure.family == core::ModelFamily::kImageClassifier);
      FUZZ_CHECK(static_cast<int>(erasure.classes.forget_classes.size()) == items);
      break;
    case v1::ErasureRequest::kGeneration:
      FUZZ_CHECK(erasure.family == core::ModelFamily::kDiffusion);
      FUZZ_CHECK(static_cast<int>(erasure.generation.forget_classes.size()) == items);
      break;
    case v1::ErasureRequest::PAYLOAD_NOT_SET:
      FUZZ_CHECK(false);  // validation refuses a request without a payload
  }
  FUZZ_CHECK(server::RequestFingerprint(request).size() == 64);
  FUZZ_CHECK(server::ForgetSetSha256(request).size() == 64);
  return 0;
}
