#include "client/commands.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include "client/exit_codes.h"
#include "client/format.h"

namespace unlearning::client {
namespace {

std::string ShortSha(const std::string& sha) { return sha.size() > 12 ? sha.substr(0, 12) : sha; }

void PrintModelSummary(const v1::ModelInfo& model, std::ostream& out) {
  out << "model:        " << model.model_id() << "\n"
      << "family:       " << FamilyName(model.family()) << "\n"
      << "architecture: " << model.architecture() << "\n"
      << "parameters:   " << model.num_parameters() << "\n"
      << "device:       " << model.device() << "\n"
      << "source:       " << model.source_dir() << "\n"
      << "serving:      version " << model.serving_version() << "\n";
}

void PrintVersions(const v1::ModelInfo& model, std::ostream& out) {
  Table table({"VERSION", "PARENT", "SERVING", "KIND", "JOB", "CREATED", "WEIGHTS", "NOTE"});
  for (const v1::ModelVersion& version : model.versions()) {
    table.AddRow({absl::StrCat(version.version()),
                  version.parent_version() > 0 ? absl::StrCat(version.parent_version()) : "-",
                  version.serving() ? "*" : "", ArtifactKindName(version.artifact_kind()),
                  version.job_id().empty() ? "-" : version.job_id(),
                  FormatUnixMs(version.created_unix_ms()), ShortSha(version.manifest_sha256()),
                  version.purged() ? absl::StrCat(version.note(), "; purged ",
                                                  FormatUnixMs(version.purged_unix_ms()),
                                                  " (after ", version.purged_by_job_id(), ")")
                                   : version.note()});
  }
  table.Print(out);
}

void PrintModel(const Connection& connection, const v1::ModelInfo& model) {
  if (connection.options().json) {
    PrintJson(model);
    return;
  }
  PrintModelSummary(model, std::cout);
  std::cout << "versions (lineage):\n";
  PrintVersions(model, std::cout);
}

}  // namespace

int ModelsList(Connection& connection) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::ListModelsResponse response;
  grpc::Status status = connection.models().ListModels(&context, {}, &response);
  if (!status.ok()) return connection.ReportRpcError(status);
  if (connection.options().json) {
    PrintJson(response);
    return kExitOk;
  }
  Table table({"MODEL", "FAMILY", "ARCHITECTURE", "PARAMETERS", "SERVING", "VERSIONS", "DEVICE"});
  for (const v1::ModelInfo& model : response.models()) {
    table.AddRow({model.model_id(), FamilyName(model.family()), model.architecture(),
                  absl::StrCat(model.num_parameters()), absl::StrCat(model.serving_version()),
                  absl::StrCat(model.versions_size()), model.device()});
  }
  table.Print(std::cout);
  return kExitOk;
}

int ModelsDescribe(Connection& connection, const std::string& model_id) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::DescribeModelRequest request;
  request.set_model_id(model_id);
  v1::ModelInfo model;
  grpc::Status status = connection.models().DescribeModel(&context, request, &model);
  if (!status.ok()) return connection.ReportRpcError(status);
  PrintModel(connection, model);
  return kExitOk;
}

int ModelsLoad(Connection& connection, const std::string& model_id, const std::string& model_dir) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::LoadModelRequest request;
  request.set_model_id(model_id);
  request.set_model_dir(model_dir);
  v1::ModelInfo model;
  grpc::Status status = connection.models().LoadModel(&context, request, &model);
  if (!status.ok()) return connection.ReportRpcError(status);
  PrintModel(connection, model);
  return kExitOk;
}

int ModelsRollback(Connection& connection, const std::string& model_id, int64_t version,
                   bool force) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::RollbackModelRequest request;
  request.set_model_id(model_id);
  request.set_version(version);
  request.set_force(force);
  v1::ModelInfo model;
  grpc::Status status = connection.models().RollbackModel(&context, request, &model);
  if (!status.ok()) return connection.ReportRpcError(status);
  if (!connection.options().json) {
    std::cout << "model " << model_id << " now serves version " << model.serving_version()
              << " (the weights of version " << version << ")\n";
    for (const v1::ModelVersion& v : model.versions()) {
      if (v.version() != model.serving_version() || v.undoes_job_ids().empty()) continue;
      std::cout << "forced: this undoes the erasure jobs "
                << absl::StrJoin(v.undoes_job_ids(), ", ") << " (requests "
                << absl::StrJoin(v.undoes_request_ids(), ", ") << "); recorded in the "
                << "certificate chain as " << v.certificate_id() << "\n";
    }
  }
  PrintModel(connection, model);
  return kExitOk;
}

int JobsList(Connection& connection, const std::string& model_id, const std::string& state,
             int page_size, bool all_pages) {
  v1::ListJobsRequest request;
  request.set_model_id(model_id);
  request.set_page_size(page_size);
  if (!state.empty()) {
    v1::JobState parsed;
    if (!ParseJobState(state, &parsed)) {
      return Fail(kExitUsage, absl::StrCat("unknown job state '", state,
                                           "' (valid: queued, running, completed, failed, "
                                           "failed_verification, cancelled)"));
    }
    request.set_state(parsed);
  }
  v1::ListJobsResponse all;
  while (true) {
    grpc::ClientContext context;
    connection.PrepareUnary(context);
    v1::ListJobsResponse response;
    grpc::Status status = connection.erasure().ListJobs(&context, request, &response);
    if (!status.ok()) return connection.ReportRpcError(status);
    for (auto& job : *response.mutable_jobs()) *all.add_jobs() = std::move(job);
    all.set_next_page_token(response.next_page_token());
    if (!all_pages || response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  if (connection.options().json) {
    PrintJson(all);
    return kExitOk;
  }
  Table table(
      {"JOB", "REQUEST", "MODEL", "METHOD", "STATE", "STEP", "ATTEMPTS", "VERSION", "ACCEPTED"});
  for (const v1::Job& job : all.jobs()) {
    table.AddRow({job.job_id(), job.request_id(), job.model_id(), job.method(),
                  JobStateName(job.state()), absl::StrCat(job.step(), "/", job.total_steps()),
                  absl::StrCat(job.attempts()),
                  job.published_version() > 0 ? absl::StrCat(job.published_version()) : "-",
                  FormatUnixMs(job.accepted_unix_ms())});
  }
  table.Print(std::cout);
  if (!all.next_page_token().empty()) {
    std::cerr << "unlearnctl: more jobs exist (use --all, or --page-size)" << std::endl;
  }
  return kExitOk;
}

int JobsGet(Connection& connection, const std::string& job_id) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = connection.erasure().GetJob(&context, request, &job);
  if (!status.ok()) return connection.ReportRpcError(status);
  if (connection.options().json) {
    PrintJson(job);
  } else {
    PrintJob(job, std::cout);
  }
  return kExitOk;
}

int JobsCancel(Connection& connection, const std::string& job_id) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  grpc::Status status = connection.erasure().CancelJob(&context, request, &job);
  if (!status.ok()) return connection.ReportRpcError(status);
  if (connection.options().json) {
    PrintJson(job);
  } else {
    std::cout << "job " << job.job_id() << ": " << JobStateName(job.state()) << "\n";
  }
  return kExitOk;
}

int CertificateGet(Connection& connection, const std::string& id) {
  v1::Certificate certificate;
  auto fetch = [&](bool by_job) {
    grpc::ClientContext context;
    connection.PrepareUnary(context);
    v1::GetCertificateRequest request;
    if (by_job) {
      request.set_job_id(id);
    } else {
      request.set_request_id(id);
    }
    return connection.erasure().GetCertificate(&context, request, &certificate);
  };
  grpc::Status status = fetch(/*by_job=*/true);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    // Not a job id (or a job without a certificate): try it as a request id,
    // and report whichever answer says more ("job j-1 has no certificate: it is
    // RUNNING" beats "unknown request").
    grpc::Status by_request = fetch(/*by_job=*/false);
    if (by_request.ok() || by_request.error_code() != grpc::StatusCode::NOT_FOUND ||
        by_request.error_message().find("certificate") != std::string::npos) {
      status = by_request;
    }
  }
  if (!status.ok()) return connection.ReportRpcError(status);
  if (connection.options().json) {
    PrintJson(certificate);
  } else {
    std::cout << ToJson(certificate, /*pretty=*/true) << std::endl;
  }
  return kExitOk;
}

int Generate(Connection& connection, const GenerateOptions& options) {
  grpc::ClientContext context;
  connection.PrepareStream(context);
  v1::GenerateRequest request;
  request.set_model_id(options.model);
  request.set_version(options.version);
  request.set_prompt(options.prompt);
  request.set_qa_format(options.qa_format);
  request.set_max_tokens(options.max_tokens);
  request.set_temperature(options.temperature);
  if (options.top_p) request.set_top_p(*options.top_p);
  request.set_seed(options.seed);
  if (options.uld_alpha) request.mutable_logit_difference()->set_alpha(*options.uld_alpha);
  if (options.uld_filter_rate) {
    request.mutable_logit_difference()->set_filter_rate(*options.uld_filter_rate);
  }
  ParsingStreamReader<v1::GenerateResponse> reader(
      connection.channel(), "/unlearning.v1.InferenceService/Generate", &context, request);
  v1::GenerateResponse chunk;
  std::string finish_reason;
  bool wrote_text = false;
  while (reader.Read(&chunk)) {
    if (connection.options().json) {
      PrintJson(chunk);
      continue;
    }
    std::cout << chunk.text() << std::flush;
    wrote_text = wrote_text || !chunk.text().empty();
    if (!chunk.finish_reason().empty()) finish_reason = chunk.finish_reason();
  }
  grpc::Status status = reader.Finish();
  if (!connection.options().json && wrote_text) std::cout << std::endl;
  if (!status.ok()) return connection.ReportRpcError(status);
  if (!connection.options().json && !finish_reason.empty()) {
    std::cerr << "[" << finish_reason << "]" << std::endl;
  }
  return kExitOk;
}

int Score(Connection& connection, const ScoreOptions& options) {
  grpc::ClientContext context;
  connection.PrepareUnary(context);
  v1::ScoreRequest request;
  request.set_model_id(options.model);
  request.set_version(options.version);
  request.set_prompt(options.prompt);
  request.set_continuation(options.continuation);
  request.set_qa_format(options.qa_format);
  if (options.uld_alpha) request.mutable_logit_difference()->set_alpha(*options.uld_alpha);
  if (options.uld_filter_rate) {
    request.mutable_logit_difference()->set_filter_rate(*options.uld_filter_rate);
  }
  v1::ScoreResponse response;
  grpc::Status status = connection.inference().Score(&context, request, &response);
  if (!status.ok()) return connection.ReportRpcError(status);
  if (connection.options().json) {
    PrintJson(response);
    return kExitOk;
  }
  std::cout << absl::StrFormat(
      "log_probability:        %.6f\nnum_tokens:             %d\n"
      "mean_token_probability: %.6f\nversion:                %d\n",
      response.log_probability(), response.num_tokens(), response.mean_token_probability(),
      response.version());
  return kExitOk;
}

}  // namespace unlearning::client
