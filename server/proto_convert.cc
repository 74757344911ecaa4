#include "server/proto_convert.h"

#include <algorithm>
#include <chrono>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "core/common/sha256.h"
#include "core/common/status_macros.h"

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
  if (t.has_stop_at_holdout_level()) (*out)["stop_at_holdout_level"] = t.stop_at_holdout_level();
  if (t.has_stop_probability_ratio()) {
    (*out)["stop_probability_ratio"] = t.stop_probability_ratio();
  }
  if (t.has_stop_check_every()) (*out)["stop_check_every"] = t.stop_check_every();
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

absl::Status ValidateText(const v1::TextErasure& text, const RequestLimits& limits) {
  if (text.forget_set_size() == 0) {
    return absl::InvalidArgumentError(
        "text.forget_set is empty: send at least one question/answer record to forget");
  }
  if (text.forget_set_size() > limits.max_forget_examples) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "text.forget_set has ", text.forget_set_size(), " records; this server accepts at most ",
        limits.max_forget_examples, " per request (--max-forget-examples): split the request"));
  }
  if (text.retain_set_size() > limits.max_retain_examples) {
    return absl::ResourceExhaustedError(absl::StrCat("text.retain_set has ", text.retain_set_size(),
                                                     " records; the limit is ",
                                                     limits.max_retain_examples));
  }
  if (text.template_answers_size() > limits.max_templates) {
    return absl::ResourceExhaustedError(
        absl::StrCat("text.template_answers has ", text.template_answers_size(),
                     " entries; the limit is ", limits.max_templates));
  }
  UNL_RETURN_IF_ERROR(CheckExamples(text.forget_set(), "text.forget_set", limits.max_text_bytes));
  UNL_RETURN_IF_ERROR(CheckExamples(text.retain_set(), "text.retain_set", limits.max_text_bytes));
  for (int i = 0; i < text.template_answers_size(); ++i) {
    UNL_RETURN_IF_ERROR(CheckText(text.template_answers(i),
                                  absl::StrCat("text.template_answers[", i, "]"),
                                  limits.max_text_bytes, true));
  }
  return absl::OkStatus();
}

// Schema checks of a class-id list; whether the ids exist is the model's business (the method's
// CheckData knows the number of classes).
absl::Status ValidateClassIds(const google::protobuf::RepeatedField<int64_t>& ids,
                              const std::string& payload) {
  if (ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(payload, ".forget_classes is empty: name at least one class id to forget"));
  }
  std::set<int64_t> seen;
  for (int64_t id : ids) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(payload, ".forget_classes has a negative class id ", id));
    }
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(payload, ".forget_classes names class ", id, " twice"));
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
    case v1::MethodParams::kNamed:
      if (params.named().name().empty()) {
        return absl::InvalidArgumentError("method.named.name is empty: give a registered method");
      }
      if (!params.named().params_json().empty()) {
        const nlohmann::json parsed =
            nlohmann::json::parse(params.named().params_json(), nullptr, false);
        if (parsed.is_discarded() || !parsed.is_object()) {
          return absl::InvalidArgumentError(
              "method.named.params_json must be a JSON object, e.g. {\"learning_rate\": 2e-5}");
        }
      }
      return params.named().name();
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
      if (p.good_answers() == v1::FlatParams::GOOD_ANSWERS_RETAIN) out["good_answers"] = "retain";
      if (p.lr_schedule() == v1::FlatParams::LR_SCHEDULE_CONSTANT) out["lr_schedule"] = "constant";
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
    case v1::MethodParams::kNamed: {
      if (params.named().params_json().empty()) break;
      nlohmann::json parsed = nlohmann::json::parse(params.named().params_json(), nullptr, false);
      if (parsed.is_object()) out = std::move(parsed);
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
  switch (request.payload_case()) {
    case v1::ErasureRequest::kClasses:
      data.family = core::ModelFamily::kImageClassifier;
      data.classes.forget_classes.assign(request.classes().forget_classes().begin(),
                                         request.classes().forget_classes().end());
      data.classes.replay_per_class = request.classes().replay_per_class();
      break;
    case v1::ErasureRequest::kGeneration:
      data.family = core::ModelFamily::kDiffusion;
      data.generation.forget_classes.assign(request.generation().forget_classes().begin(),
                                            request.generation().forget_classes().end());
      data.generation.override_class =
          request.generation().has_override_class() ? request.generation().override_class() : -1;
      break;
    default: {
      data.family = core::ModelFamily::kCausalLm;
      const v1::TextErasure& text = request.text();
      for (const auto& e : text.forget_set()) data.forget.push_back(FromProto(e));
      for (const auto& e : text.retain_set()) data.retain.push_back(FromProto(e));
      data.templates.assign(text.template_answers().begin(), text.template_answers().end());
    }
  }
  return data;
}

absl::StatusOr<core::Comparison> FromProto(v1::Comparison comparison) {
  switch (comparison) {
    case v1::COMPARISON_RATIO_AT_MOST:
      return core::Comparison::kRatioAtMost;
    case v1::COMPARISON_RATIO_AT_LEAST:
      return core::Comparison::kRatioAtLeast;
    case v1::COMPARISON_AT_MOST:
      return core::Comparison::kAtMost;
    case v1::COMPARISON_AT_LEAST:
      return core::Comparison::kAtLeast;
    case v1::COMPARISON_ABS_AT_MOST:
      return core::Comparison::kAbsAtMost;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      "comparison is not set: choose COMPARISON_RATIO_AT_MOST, COMPARISON_RATIO_AT_LEAST, "
      "COMPARISON_AT_MOST, COMPARISON_AT_LEAST or COMPARISON_ABS_AT_MOST");
}

absl::StatusOr<std::vector<core::Threshold>> ThresholdsFromProto(
    const v1::VerificationThresholds& t, core::ModelFamily family) {
  const bool shorthand = t.has_max_forget_probability_ratio() ||
                         t.has_min_retain_probability_ratio() || t.has_max_mia_auc();
  if (shorthand && t.checks_size() > 0) {
    return absl::InvalidArgumentError(
        "thresholds: give either checks or the text shorthands (max_forget_probability_ratio, "
        "min_retain_probability_ratio, max_mia_auc), not both");
  }
  if (t.checks_size() > 0) {
    std::vector<core::Threshold> out;
    for (int i = 0; i < t.checks_size(); ++i) {
      const v1::Threshold& c = t.checks(i);
      core::Threshold threshold;
      threshold.figure = c.figure();
      absl::StatusOr<core::Comparison> comparison = FromProto(c.comparison());
      if (!comparison.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("thresholds.checks[", i, "]: ", comparison.status().message()));
      }
      threshold.comparison = *comparison;
      threshold.bound = c.bound();
      threshold.required = true;
      out.push_back(std::move(threshold));
    }
    return out;  // figure names are checked against the family's verifier by PlanErasure
  }
  if (!shorthand) return std::vector<core::Threshold>{};  // the family's defaults
  if (family != core::ModelFamily::kCausalLm) {
    return absl::InvalidArgumentError(absl::StrCat(
        "thresholds: max_forget_probability_ratio, min_retain_probability_ratio and max_mia_auc "
        "apply to language models; this model is a ",
        core::ModelFamilyName(family), " model: use thresholds.checks"));
  }
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
  return out.List();
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
  switch (request.payload_case()) {
    case v1::ErasureRequest::kText:
      UNL_RETURN_IF_ERROR(ValidateText(request.text(), limits));
      break;
    case v1::ErasureRequest::kClasses:
      UNL_RETURN_IF_ERROR(ValidateClassIds(request.classes().forget_classes(), "classes"));
      if (request.classes().replay_per_class() < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "classes.replay_per_class must be >= 0, got ", request.classes().replay_per_class()));
      }
      break;
    case v1::ErasureRequest::kGeneration:
      UNL_RETURN_IF_ERROR(ValidateClassIds(request.generation().forget_classes(), "generation"));
      if (request.generation().has_override_class()) {
        const int64_t o = request.generation().override_class();
        for (int64_t c : request.generation().forget_classes()) {
          if (c == o) {
            return absl::InvalidArgumentError(absl::StrCat(
                "generation.override_class ", o,
                " is also a forget class: choose a class the model keeps, or leave it unset"));
          }
        }
      }
      break;
    case v1::ErasureRequest::PAYLOAD_NOT_SET:
      return absl::InvalidArgumentError(
          "the request has no payload: set text (language models), classes (image classifiers) "
          "or generation (diffusion models)");
  }
  if (request.compliance_reference().size() > 1024) {
    return absl::InvalidArgumentError("compliance_reference is longer than 1024 bytes");
  }
  return absl::OkStatus();
}

std::string ForgetSetSha256(const v1::ErasureRequest& request) {
  nlohmann::json canonical;
  switch (request.payload_case()) {
    case v1::ErasureRequest::kClasses:
    case v1::ErasureRequest::kGeneration: {
      const auto& ids = request.payload_case() == v1::ErasureRequest::kClasses
                            ? request.classes().forget_classes()
                            : request.generation().forget_classes();
      std::vector<int64_t> sorted(ids.begin(), ids.end());
      std::sort(sorted.begin(), sorted.end());
      canonical = {{"forget_classes", sorted}};
      break;
    }
    default:
      canonical = nlohmann::json::array();
      for (const auto& e : request.text().forget_set()) {
        canonical.push_back({{"answer", e.answer()}, {"question", e.question()}});
      }
  }
  return core::Sha256Hex(canonical.dump());
}

int ForgetItemCount(const v1::ErasureRequest& request) {
  switch (request.payload_case()) {
    case v1::ErasureRequest::kClasses:
      return request.classes().forget_classes_size();
    case v1::ErasureRequest::kGeneration:
      return request.generation().forget_classes_size();
    default:
      return request.text().forget_set_size();
  }
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

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace unlearning::server
