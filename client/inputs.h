// Local inputs of an erasure request: JSONL example files, template files,
// --param key=value method parameters and generated request ids. Every error
// names the offending file:line or key.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "unlearning/v1/erasure.pb.h"
#include "unlearning/v1/methods.pb.h"

namespace unlearning::client {

// Reads TOFU-style JSONL: one object per line with non-empty strings "question"
// and "answer", and optional "paraphrased_questions" / "perturbed_answers"
// (arrays of strings; TOFU's singular "paraphrased_question" and
// "perturbed_answer" are accepted too). Other keys are ignored, blank lines
// skipped. Errors: kNotFound (cannot open), kInvalidArgument naming "file:line:
// ...".
absl::StatusOr<std::vector<v1::TextExample>> ReadExamplesJsonl(const std::string& path);

// Reads template answers: a .jsonl file holds one JSON string or object with
// "answer" (or "template" / "text") per line; any other file holds one template
// per non-empty line.
absl::StatusOr<std::vector<std::string>> ReadTemplates(const std::string& path);

// The method names accepted by --method: flat, gradient_ascent,
// gradient_difference, npo.
std::vector<std::string> MethodNames();

// Builds the MethodParams for `method` from "key=value" strings. Keys are the
// fields of the method's message (e.g. FlatParams.divergence, NpoParams.beta)
// and of TrainingOptions; values are parsed by the field's type (enums by name:
// divergence=js or DIVERGENCE_JENSEN_SHANNON). kInvalidArgument for an unknown
// method, a malformed pair, an unknown key (the message lists the method's
// valid keys) or a value of the wrong type.
absl::StatusOr<v1::MethodParams> BuildMethodParams(const std::string& method,
                                                   const std::vector<std::string>& params);

// The keys BuildMethodParams accepts for `method` (sorted); empty for an
// unknown method.
std::vector<std::string> ValidParamKeys(const std::string& method);

// A random version-4 UUID string, e.g. "3f2b9c1e-8d4a-4e7b-9a51-0c6d2e8f7a13".
std::string RandomRequestId();

// "FIGURE:COMPARISON:BOUND" (COMPARISON: ratio_at_most, ratio_at_least, at_most, at_least) as a
// Threshold, e.g. "acc_f:ratio_at_most:0.2". kInvalidArgument saying what is wrong.
absl::StatusOr<v1::Threshold> ParseThresholdSpec(const std::string& spec);

}  // namespace unlearning::client
