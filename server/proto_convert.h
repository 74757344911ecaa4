// Translation between the unlearning.v1 protobuf messages and core / journal types, at the
// server's edge (the one place the services and the job runner convert). Also the request
// validation that needs nothing but the request itself. Requests (validation, request -> core) are
// defined in proto_convert.cc, which needs only the core's data types, so the request fuzzer
// (tests/fuzz/fuzz_erasure_request.cc) links it alone; reports, jobs and certificates in
// job_convert.cc.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <grpcpp/support/status.h>
#include <nlohmann/json.hpp>

#include "core/data/text_example.h"
#include "core/methods/method.h"
#include "core/models/model.h"
#include "core/verify/text_verification.h"
#include "core/verify/thresholds.h"
#include "server/infra/journal.h"
#include "unlearning/v1/erasure.pb.h"
#include "unlearning/v1/methods.pb.h"
#include "unlearning/v1/models.pb.h"

namespace unlearning::server {

// Registry name of the method selected in `params` ("flat", "gradient_ascent", ...), or
// kInvalidArgument if no method is set.
absl::StatusOr<std::string> MethodName(const v1::MethodParams& params);

// The method's parameters as the JSON object the core method registry validates (only the fields
// the client set; the method fills in defaults). Keys are the proto field names, training options
// flattened to the top level.
nlohmann::json MethodParamsToJson(const v1::MethodParams& params);

core::TextExample FromProto(const v1::TextExample& example);
v1::TextExample ToProto(const core::TextExample& example);
// The request's payload as core data (ErasureData::family says which payload was set).
core::ErasureData ErasureDataFromProto(const v1::ErasureRequest& request);
// kInvalidArgument for COMPARISON_UNSPECIFIED.
absl::StatusOr<core::Comparison> FromProto(v1::Comparison comparison);

// The request's thresholds as a list for a model of `family`: `checks` as given (figure names are
// checked against the family by core::PlanErasure), the text shorthands applied to the text
// defaults, or empty (= the family's defaults). kInvalidArgument when out of range, when both
// forms are given, or when shorthands are given for a model that is not a language model.
absl::StatusOr<std::vector<core::Threshold>> ThresholdsFromProto(
    const v1::VerificationThresholds& thresholds, core::ModelFamily family);

// Number of forget items of the request (text records or class ids).
int ForgetItemCount(const v1::ErasureRequest& request);

v1::ArtifactKind ToProto(core::ArtifactKind kind);
// core::ParseArtifactKind (journal names).
absl::StatusOr<core::ArtifactKind> ArtifactKindFromName(const std::string& name);

v1::VerificationReport ToProto(const core::VerificationReport& report);
nlohmann::json ReportToJson(const core::VerificationReport& report);
v1::VerificationReport ReportFromJson(const nlohmann::json& json);

v1::ModelFamily ToProto(core::ModelFamily family);

// Limits applied to an erasure request before it is accepted.
struct RequestLimits {
  int max_forget_examples = 10000;
  int max_retain_examples = 100000;
  int max_templates = 1000;
  int max_text_bytes = 16 * 1024;  // per question / answer / template
};

// Schema validation of an erasure request (ids, payload, sizes, UTF-8). Thresholds and whether
// the payload fits the model are checked at submit time with the model's family. kInvalidArgument
// with what to fix; kResourceExhausted when a set exceeds a limit.
absl::Status ValidateErasureRequest(const v1::ErasureRequest& request, const RequestLimits& limits);

// SHA-256 (hex) of the forget payload in canonical form: for text the JSON array of
// {"question","answer"} objects in request order; for classes {"forget_classes": sorted ids}.
// Certificates carry it so a data subject's records can be matched.
std::string ForgetSetSha256(const v1::ErasureRequest& request);

// SHA-256 (hex) of the request's canonical serialisation (deterministic protobuf bytes): two
// requests with the same id but different contents are a client error.
std::string RequestFingerprint(const v1::ErasureRequest& request);

// ---- jobs and certificates: journal records <-> v1 ----

// v1::Job from the journal's record (verification report parsed from its JSON).
v1::Job JobToProto(const JobRecord& record);
v1::JobState ToProto(JobState state);
// nullopt for JOB_STATE_UNSPECIFIED (= any state in a filter).
std::optional<JobState> JobStateFromProto(v1::JobState state);
// The ErasureEvent kind that ends a job in `state`.
v1::ErasureEvent::Kind TerminalKind(JobState state);
// The certificate of a completed job as the proto clients get (certificate_sha256 filled in).
// kInternal if the stored JSON does not parse.
absl::StatusOr<v1::Certificate> CertificateFromRecord(const CertificateRecord& record);

// gRPC status of an absl status (same code, same message).
grpc::Status ToGrpc(const absl::Status& status);

// Current Unix time in milliseconds.
int64_t NowUnixMs();

}  // namespace unlearning::server
