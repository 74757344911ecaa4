#include "server/proto_convert.h"

#include <chrono>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "core/common/sha256.h"

namespace unlearning::server {
namespace {

void AddTraining(const v1::TrainingOptions& t, nlohmann::json* out) {
  if (t.has_learning_rate()) (*out)["learning_rate"] = t.learning_rate();
  if (t.has_epochs()) (*out)["epochs"] = t.epochs();
  if (t.has_batch_size()) (*out)["batch_size"] = t.batch_size();
  if (t.has_weight_decay()) (*out)["weight_decay"] = t.weight_decay();
  if (t.has_max_grad_norm()) (*out)["max_grad_norm"] = t.max_grad_norm();
  if (t.has_max_steps()) (*out)["max_steps"] = t.max_steps();
  if (t.has_seed()) (*out)["seed"] = t.seed();
}

const char* DivergenceName(v1::FlatParams::Divergence d) {
  switch (d) {
    case v1::FlatParams::DIVERGENCE_JENSEN_SHANNON:
      return "js";
    case v1::FlatParams::DIVERGENCE_PEARSON:
      return "pearson";
    case v1::FlatParams::DIVERGENCE_TOTAL_VARIATION:
      return "tv";
    default:
      return "kl";
  }
}

absl::Status CheckText(const std::string& text, const std::string& where, int max_bytes,
                       bool required) {
  if (required && text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is empty"));
  }
  if (static_cast<int>(text.size()) > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " is ", text.size(), " bytes; the limit is ", max_bytes));
  }
  if (!core::IsValidUtf8(text)) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is not valid UTF-8"));
  }
  return absl::OkStatus();
}

absl::Status CheckExamples(const google::protobuf::RepeatedPtrField<v1::TextExample>& set,
                           const std::string& name, int max_bytes) {
  for (int i = 0; i < set.size(); ++i) {
    const v1::TextExample& e = set[i];
    const std::string at = absl::StrCat(name, "[", i, "]");
    if (auto s = CheckText(e.question(), at + ".question", max_bytes, true); !s.ok()) return s;
    if (auto s = CheckText(e.answer(), at + ".answer", max_bytes, true); !s.ok()) return s;
    for (int j = 0; j < e.paraphrased_questions_size(); ++j) {
      if (auto s = CheckText(e.paraphrased_questions(j),
                             absl::StrCat(at, ".paraphrased_questions[", j, "]"), max_bytes, true);
          !s.ok()) {
        return s;
      }
    }
    for (int j = 0; j < e.perturbed_answers_size(); ++j) {
      if (auto s = CheckText(e.perturbed_answers(j),
                             absl::StrCat(at, ".perturbed_answers[", j, "]"), max_bytes, true);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> MethodName(const v1::MethodParams& params) {
  switch (params.method_case()) {
    case v1::MethodParams::kFlat:
      return std::string("flat");
    case v1::MethodParams::kGradientAscent:
      return std::string("gradient_ascent");
    case v1::MethodParams::kGradientDifference:
      return std::string("gradient_difference");
    case v1::MethodParams::kNpo:
      return std::string("npo");
    case v1::MethodParams::METHOD_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      "method is not set: choose one of flat, gradient_ascent, gradient_difference, npo");
}

nlohmann::json MethodParamsToJson(const v1::MethodParams& params) {
  nlohmann::json out = nlohmann::json::object();
  switch (params.method_case()) {
    case v1::MethodParams::kFlat: {
      const auto& p = params.flat();
      AddTraining(p.training(), &out);
      out["divergence"] = DivergenceName(p.divergence());
      if (p.reference_code_aggregation()) out["reference_code_aggregation"] = true;
      if (p.has_use_builtin_templates()) out["use_builtin_templates"] = p.use_builtin_templates();
      break;
    }
    case v1::MethodParams::kGradientAscent:
      AddTraining(params.gradient_ascent().training(), &out);
      break;
    case v1::MethodParams::kGradientDifference: {
      const auto& p = params.gradient_difference();
      AddTraining(p.training(), &out);
      if (p.has_forget_weight()) out["forget_weight"] = p.forget_weight();
      if (p.has_retain_weight()) out["retain_weight"] = p.retain_weight();
      break;
    }
    case v1::MethodParams::kNpo: {
      const auto& p = params.npo();
      AddTraining(p.training(), &out);
      if (p.has_beta()) out["beta"] = p.beta();
      if (p.has_retain_weight()) out["retain_weight"] = p.retain_weight();
      break;
    }
    case v1::MethodParams::METHOD_NOT_SET:
      break;
  }
  return out;
}

core::TextExample FromProto(const v1::TextExample& example) {
  core::TextExample out;
  out.question = example.question();
  out.answer = example.answer();
  out.paraphrased_questions.assign(example.paraphrased_questions().begin(),
                                   example.paraphrased_questions().end());
  out.perturbed_answers.assign(example.perturbed_answers().begin(),
                               example.perturbed_answers().end());
  return out;
}

v1::TextExample ToProto(const core::TextExample& example) {
  v1::TextExample out;
  out.set_question(example.question);
  out.set_answer(example.answer);
  for (const auto& q : example.paraphrased_questions) out.add_paraphrased_questions(q);
  for (const auto& a : example.perturbed_answers) out.add_perturbed_answers(a);
  return out;
}

core::ErasureData ErasureDataFromProto(const v1::ErasureRequest& request) {
  core::ErasureData data;
  for (const auto& e : request.forget_set()) data.forget.push_back(FromProto(e));
  for (const auto& e : request.retain_set()) data.retain.push_back(FromProto(e));
  data.templates.assign(request.template_answers().begin(), request.template_answers().end());
  return data;
}

absl::StatusOr<core::VerificationThresholds> ThresholdsFromProto(
    const v1::VerificationThresholds& t) {
  core::VerificationThresholds out;
  if (t.has_max_forget_probability_ratio()) {
    const double v = t.max_forget_probability_ratio();
    if (!(v > 0.0 && v <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("thresholds.max_forget_probability_ratio must be in (0, 1], got ", v));
    }
    out.max_forget_probability_ratio = v;
  }
  if (t.has_min_retain_probability_ratio()) {
    const double v = t.min_retain_probability_ratio();
    if (!(v >= 0.0 && v <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("thresholds.min_retain_probability_ratio must be in [0, 1], got ", v));
    }
    out.min_retain_probability_ratio = v;
  }
  if (t.has_max_mia_auc()) {
    const double v = t.max_mia_auc();
    if (!(v >= 0.5 && v <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("thresholds.max_mia_auc must be in [0.5, 1], got ", v));
    }
    out.max_mia_auc = v;
  }
  return out;
}

v1::VerificationReport ToProto(const core::VerificationReport& report) {
  v1::VerificationReport out;
  for (const auto& f : report.figures) {
    v1::Figure* fig = out.add_figures();
    fig->set_name(f.name);
    fig->set_before(f.before);
    fig->set_after(f.after);
  }
  out.set_passed(report.passed);
  for (const auto& c : report.checks) out.add_checks(c);
  out.set_forget_examples(report.forget_examples);
  out.set_retain_examples(report.retain_examples);
  out.set_holdout_examples(report.holdout_examples);
  return out;
}

nlohmann::json ReportToJson(const core::VerificationReport& report) {
  nlohmann::json figures = nlohmann::json::array();
  for (const auto& f : report.figures) {
    figures.push_back({{"name", f.name}, {"before", f.before}, {"after", f.after}});
  }
  return {{"figures", figures},
          {"passed", report.passed},
          {"checks", report.checks},
          {"forget_examples", report.forget_examples},
          {"retain_examples", report.retain_examples},
          {"holdout_examples", report.holdout_examples}};
}

v1::VerificationReport ReportFromJson(const nlohmann::json& json) {
  v1::VerificationReport out;
  if (!json.is_object()) return out;
  for (const auto& f : json.value("figures", nlohmann::json::array())) {
    v1::Figure* fig = out.add_figures();
    fig->set_name(f.value("name", ""));
    fig->set_before(f.value("before", 0.0));
    fig->set_after(f.value("after", 0.0));
  }
  out.set_passed(json.value("passed", false));
  for (const auto& c : json.value("checks", nlohmann::json::array())) {
    out.add_checks(c.get<std::string>());
  }
  out.set_forget_examples(json.value("forget_examples", 0));
  out.set_retain_examples(json.value("retain_examples", 0));
  out.set_holdout_examples(json.value("holdout_examples", 0));
  return out;
}

v1::ModelFamily ToProto(core::ModelFamily family) {
  switch (family) {
    case core::ModelFamily::kCausalLm:
      return v1::MODEL_FAMILY_CAUSAL_LM;
    case core::ModelFamily::kImageClassifier:
      return v1::MODEL_FAMILY_IMAGE_CLASSIFIER;
    case core::ModelFamily::kDiffusion:
      return v1::MODEL_FAMILY_DIFFUSION;
  }
  return v1::MODEL_FAMILY_UNSPECIFIED;
}

absl::Status ValidateErasureRequest(const v1::ErasureRequest& request,
                                    const RequestLimits& limits) {
  static const std::regex kRequestId("[A-Za-z0-9._:-]{1,128}");
  if (request.request_id().empty()) {
    return absl::InvalidArgumentError(
        "request_id is required: a client-chosen idempotency key of 1 to 128 characters "
        "[A-Za-z0-9._:-]");
  }
  if (!std::regex_match(request.request_id(), kRequestId)) {
    return absl::InvalidArgumentError("request_id must be 1 to 128 characters of [A-Za-z0-9._:-]");
  }
  if (request.model_id().empty()) {
    return absl::InvalidArgumentError("model_id is required");
  }
  if (auto name = MethodName(request.method()); !name.ok()) return name.status();
  if (request.forget_set_size() == 0) {
    return absl::InvalidArgumentError(
        "forget_set is empty: send at least one question/answer record to forget");
  }
  if (request.forget_set_size() > limits.max_forget_examples) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "forget_set has ", request.forget_set_size(), " records; this server accepts at most ",
        limits.max_forget_examples, " per request (--max-forget-examples): split the request"));
  }
  if (request.retain_set_size() > limits.max_retain_examples) {
    return absl::ResourceExhaustedError(absl::StrCat("retain_set has ", request.retain_set_size(),
                                                     " records; the limit is ",
                                                     limits.max_retain_examples));
  }
  if (request.template_answers_size() > limits.max_templates) {
    return absl::ResourceExhaustedError(
        absl::StrCat("template_answers has ", request.template_answers_size(),
                     " entries; the limit is ", limits.max_templates));
  }
  if (auto s = CheckExamples(request.forget_set(), "forget_set", limits.max_text_bytes); !s.ok()) {
    return s;
  }
  if (auto s = CheckExamples(request.retain_set(), "retain_set", limits.max_text_bytes); !s.ok()) {
    return s;
  }
  for (int i = 0; i < request.template_answers_size(); ++i) {
    if (auto s = CheckText(request.template_answers(i), absl::StrCat("template_answers[", i, "]"),
                           limits.max_text_bytes, true);
        !s.ok()) {
      return s;
    }
  }
  if (request.compliance_reference().size() > 1024) {
    return absl::InvalidArgumentError("compliance_reference is longer than 1024 bytes");
  }
  if (auto t = ThresholdsFromProto(request.thresholds()); !t.ok()) return t.status();
  return absl::OkStatus();
}

std::string ForgetSetSha256(const v1::ErasureRequest& request) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& e : request.forget_set()) {
    arr.push_back({{"answer", e.answer()}, {"question", e.question()}});
  }
  return core::Sha256Hex(arr.dump());
}

std::string RequestFingerprint(const v1::ErasureRequest& request) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  return core::Sha256Hex(bytes);
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace unlearning::server
