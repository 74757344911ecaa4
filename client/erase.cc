#include "client/erase.h"

#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "client/exit_codes.h"
#include "client/format.h"
#include "client/inputs.h"

namespace unlearning::client {
namespace {

using Clock = std::chrono::steady_clock;
using EraseStream = grpc::ClientReaderWriter<v1::ErasureStreamRequest, v1::ErasureEvent>;

bool IsTerminal(v1::ErasureEvent::Kind kind) {
  return kind == v1::ErasureEvent::KIND_COMPLETED || kind == v1::ErasureEvent::KIND_FAILED ||
         kind == v1::ErasureEvent::KIND_FAILED_VERIFICATION ||
         kind == v1::ErasureEvent::KIND_CANCELLED;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_COMPLETED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_FAILED_VERIFICATION || state == v1::JOB_STATE_CANCELLED;
}

std::string KindName(v1::ErasureEvent::Kind kind) {
  std::string name = v1::ErasureEvent::Kind_Name(kind);
  return name.rfind("KIND_", 0) == 0 ? name.substr(5) : name;
}

absl::StatusOr<v1::ErasureRequest> BuildRequest(const EraseOptions& options) {
  v1::ErasureRequest request;
  request.set_request_id(options.request_id);
  request.set_model_id(options.model);
  auto method = BuildMethodParams(options.method, options.params);
  if (!method.ok()) return method.status();
  *request.mutable_method() = *std::move(method);
  if (!options.forget_classes.empty() && !options.forget_path.empty()) {
    return absl::InvalidArgumentError(
        "give either --forget FILE (text) or --forget-class (images)");
  }
  if (!options.forget_classes.empty()) {
    // Class-conditional generators take an override class; classifiers a replay budget.
    if (options.override_class) {
      v1::GenerationErasure* g = request.mutable_generation();
      for (int64_t c : options.forget_classes) g->add_forget_classes(c);
      if (*options.override_class != "random") {
        int64_t id = 0;
        if (!absl::SimpleAtoi(*options.override_class, &id) || id < 0) {
          return absl::InvalidArgumentError(absl::StrCat("--override-class '",
                                                         *options.override_class,
                                                         "': expected a class id or \"random\""));
        }
        g->set_override_class(id);
      }
    } else {
      v1::ClassErasure* c = request.mutable_classes();
      for (int64_t id : options.forget_classes) c->add_forget_classes(id);
      c->set_replay_per_class(options.replay_per_class);
    }
  } else {
    if (options.forget_path.empty()) {
      return absl::InvalidArgumentError(
          "nothing to forget: give --forget FILE (language models) or --forget-class ID");
    }
    auto forget = ReadExamplesJsonl(options.forget_path);
    if (!forget.ok()) return forget.status();
    for (auto& example : *forget) *request.mutable_text()->add_forget_set() = std::move(example);
  }
  for (const std::string& spec : options.thresholds) {
    auto threshold = ParseThresholdSpec(spec);
    if (!threshold.ok()) return threshold.status();
    *request.mutable_thresholds()->add_checks() = *std::move(threshold);
  }
  if (!options.retain_path.empty()) {
    auto retain = ReadExamplesJsonl(options.retain_path);
    if (!retain.ok()) return retain.status();
    for (auto& example : *retain) *request.mutable_text()->add_retain_set() = std::move(example);
  }
  if (!options.templates_path.empty()) {
    auto templates = ReadTemplates(options.templates_path);
    if (!templates.ok()) return templates.status();
    for (auto& text : *templates) request.mutable_text()->add_template_answers(std::move(text));
  }
  v1::VerificationThresholds* thresholds = request.mutable_thresholds();
  if (options.max_forget_ratio)
    thresholds->set_max_forget_probability_ratio(*options.max_forget_ratio);
  if (options.min_retain_ratio)
    thresholds->set_min_retain_probability_ratio(*options.min_retain_ratio);
  if (options.max_mia_auc) thresholds->set_max_mia_auc(*options.max_mia_auc);
  request.set_compliance_reference(options.compliance_reference);
  return request;
}

// Prints the outcome of a terminal event and returns its exit code.
int ReportTerminal(const Connection& connection, const v1::ErasureEvent& event) {
  if (connection.options().json) PrintJson(event);
  const v1::Job& job = event.job();
  const std::string& job_id = event.job_id().empty() ? job.job_id() : event.job_id();
  const v1::VerificationReport& report = event.certificate().has_verification()
                                             ? event.certificate().verification()
                                             : job.verification();
  std::string detail = !event.message().empty() ? event.message() : job.error_message();
  switch (event.kind()) {
    case v1::ErasureEvent::KIND_COMPLETED:
      if (!connection.options().json) {
        int64_t version = event.certificate().version_after() > 0
                              ? event.certificate().version_after()
                              : job.published_version();
        std::cout << "job " << job_id << " COMPLETED: model " << job.model_id()
                  << " now serves version " << version << " (attempts " << job.attempts() << ")\n";
        PrintVerification(report, std::cout);
        std::cout << "certificate: " << event.certificate().certificate_id() << std::endl;
      }
      return kExitOk;
    case v1::ErasureEvent::KIND_FAILED_VERIFICATION:
      if (!connection.options().json) PrintVerification(report, std::cout);
      return Fail(kExitJobFailedVerification, absl::StrCat("job ", job_id, " FAILED_VERIFICATION: ",
                                                           detail, " (nothing was published)"));
    case v1::ErasureEvent::KIND_FAILED:
      return Fail(kExitJobFailed, absl::StrCat("job ", job_id, " FAILED: ", detail));
    case v1::ErasureEvent::KIND_CANCELLED:
      return Fail(kExitJobCancelled,
                  absl::StrCat("job ", job_id, " CANCELLED", detail.empty() ? "" : ": ", detail));
    default:
      return Fail(kExitError, absl::StrCat("unexpected event ", KindName(event.kind())));
  }
}

// Reads `stream` until the terminal event of `job_id` (returns true and sets
// `*terminal`) or until the stream ends (returns false). A REJECTED event about
// the job (e.g. an unknown watch id) is returned as terminal too.
bool ReadUntilTerminal(EraseStream& stream, const std::string& job_id, ProgressDisplay& progress,
                       v1::ErasureEvent* terminal) {
  v1::ErasureEvent event;
  while (stream.Read(&event)) {
    if (!event.job_id().empty() && event.job_id() != job_id) continue;
    if (event.kind() == v1::ErasureEvent::KIND_PROGRESS) {
      progress.Update(event.progress());
    } else if (IsTerminal(event.kind()) || event.kind() == v1::ErasureEvent::KIND_REJECTED) {
      progress.Finish();
      *terminal = std::move(event);
      return true;
    }
  }
  return false;
}

// Ends a stream we no longer need without waiting for the server to close it.
// Closing the stream never cancels the job: the server keeps it (it is
// durable).
void Abandon(grpc::ClientContext& context, EraseStream& stream) {
  stream.WritesDone();
  context.TryCancel();
  stream.Finish().ok();
}

// An ErasureEvent describing the terminal `job` (fetched with GetJob), with the
// certificate when it COMPLETED.
v1::ErasureEvent TerminalEventFromJob(Connection& connection, const v1::Job& job) {
  v1::ErasureEvent event;
  event.set_job_id(job.job_id());
  event.set_request_id(job.request_id());
  event.set_message(job.error_message());
  *event.mutable_job() = job;
  switch (job.state()) {
    case v1::JOB_STATE_COMPLETED: {
      event.set_kind(v1::ErasureEvent::KIND_COMPLETED);
      grpc::ClientContext context;
      connection.PrepareUnary(context);
      v1::GetCertificateRequest request;
      request.set_job_id(job.job_id());
      grpc::Status status =
          connection.erasure().GetCertificate(&context, request, event.mutable_certificate());
      if (!status.ok()) {
        std::cerr << "unlearnctl: warning: cannot fetch the certificate: "
                  << StatusCodeName(status.error_code()) << ": " << status.error_message()
                  << std::endl;
      }
      break;
    }
    case v1::JOB_STATE_FAILED:
      event.set_kind(v1::ErasureEvent::KIND_FAILED);
      break;
    case v1::JOB_STATE_FAILED_VERIFICATION:
      event.set_kind(v1::ErasureEvent::KIND_FAILED_VERIFICATION);
      break;
    default:
      event.set_kind(v1::ErasureEvent::KIND_CANCELLED);
      break;
  }
  return event;
}

int ReportWatchRejected(const Connection& connection, const v1::ErasureEvent& event) {
  if (connection.options().json) PrintJson(event);
  return Fail(kExitRpc,
              absl::StrCat(StatusCodeName(static_cast<grpc::StatusCode>(event.status_code())), ": ",
                           event.message()));
}

// Follows `job_id` to its end: GetJob (terminal -> done), else a watch stream;
// whenever the server cannot be reached or the stream breaks, retries until
// `reconnect_timeout_seconds` pass without contact. `reconnecting` = the caller
// just lost a stream (wait for the server to come back rather than failing
// fast).
int Follow(Connection& connection, const std::string& job_id, double reconnect_timeout_seconds,
           bool reconnecting, ProgressDisplay& progress) {
  auto last_contact = Clock::now();
  const auto reconnect_budget = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(reconnect_timeout_seconds));
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    // 1. Where is the job now?
    v1::Job job;
    {
      grpc::ClientContext context;
      connection.PrepareUnary(context);
      if (reconnecting) {
        context.set_wait_for_ready(true);
        auto remaining = last_contact + reconnect_budget - Clock::now();
        context.set_deadline(std::chrono::system_clock::now() +
                             std::min<Clock::duration>(remaining, std::chrono::seconds(10)));
      }
      v1::GetJobRequest request;
      request.set_job_id(job_id);
      grpc::Status status = connection.erasure().GetJob(&context, request, &job);
      if (!status.ok()) {
        const bool transient = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                               status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
        if (!reconnecting || !transient || Clock::now() - last_contact >= reconnect_budget) {
          progress.Finish();
          return connection.ReportRpcError(status);
        }
        continue;
      }
    }
    last_contact = Clock::now();
    if (IsTerminal(job.state())) {
      progress.Finish();
      return ReportTerminal(connection, TerminalEventFromJob(connection, job));
    }
    if (job.total_steps() > 0) {
      v1::Progress snapshot;
      snapshot.set_step(job.step());
      snapshot.set_total_steps(job.total_steps());
      snapshot.set_loss(job.loss());
      snapshot.set_phase(JobStateName(job.state()) == "QUEUED" ? "queued" : "running");
      progress.Update(snapshot);
    }
    // 2. Follow its events.
    grpc::ClientContext context;
    connection.PrepareStream(context);
    std::unique_ptr<EraseStream> stream = connection.erasure().Erase(&context);
    v1::ErasureStreamRequest watch;
    watch.set_watch_job_id(job_id);
    v1::ErasureEvent terminal;
    if (stream->Write(watch) && ReadUntilTerminal(*stream, job_id, progress, &terminal)) {
      Abandon(context, *stream);
      if (terminal.kind() == v1::ErasureEvent::KIND_REJECTED) {
        return ReportWatchRejected(connection, terminal);
      }
      return ReportTerminal(connection, terminal);
    }
    stream->WritesDone();
    grpc::Status status = stream->Finish();
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        connection.options().timeout_seconds > 0) {
      progress.Finish();
      return connection.ReportRpcError(status);
    }
    progress.Finish();
    std::cerr << "unlearnctl: lost the stream to " << connection.options().server << " ("
              << StatusCodeName(status.error_code()) << ": " << status.error_message()
              << "); reconnecting to follow job " << job_id << std::endl;
    reconnecting = true;
    last_contact = Clock::now();
  }
}

}  // namespace

int RunErase(Connection& connection, const EraseOptions& options) {
  EraseOptions effective = options;
  const bool generated_id = effective.request_id.empty();
  if (generated_id) effective.request_id = RandomRequestId();
  auto request = BuildRequest(effective);
  if (!request.ok()) return Fail(kExitUsage, std::string(request.status().message()));
  if (generated_id) std::cerr << "unlearnctl: request id " << effective.request_id << std::endl;

  grpc::ClientContext context;
  if (effective.wait) {
    connection.PrepareStream(context);
  } else {
    connection.PrepareUnary(context);
  }
  std::unique_ptr<EraseStream> stream = connection.erasure().Erase(&context);
  v1::ErasureStreamRequest submit;
  *submit.mutable_submit() = *std::move(request);
  stream->Write(submit);

  // Wait for the answer about our request.
  v1::ErasureEvent event;
  bool answered = false;
  while (stream->Read(&event)) {
    if (event.request_id() != effective.request_id) continue;
    if (event.kind() == v1::ErasureEvent::KIND_ACCEPTED ||
        event.kind() == v1::ErasureEvent::KIND_REJECTED) {
      answered = true;
      break;
    }
  }
  if (!answered) {
    stream->WritesDone();
    grpc::Status status = stream->Finish();
    if (status.ok()) {
      status = grpc::Status(grpc::StatusCode::UNKNOWN,
                            "the server closed the stream without "
                            "answering the request");
    }
    int code = connection.ReportRpcError(status);
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
        status.error_message().find("failed to connect") != std::string::npos) {
      return code;  // never reached the server: nothing was stored
    }
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
        status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      return code;  // refused when the stream opened: nothing was stored
    }
    std::cerr << "unlearnctl: the request may or may not have been stored; "
                 "resending it with "
                 "--request-id "
              << effective.request_id << " is safe (idempotent)" << std::endl;
    return code;
  }
  if (connection.options().json) PrintJson(event);
  if (event.kind() == v1::ErasureEvent::KIND_REJECTED) {
    Abandon(context, *stream);
    return Fail(kExitRejected,
                absl::StrCat("request ", effective.request_id, " rejected: ",
                             StatusCodeName(static_cast<grpc::StatusCode>(event.status_code())),
                             ": ", event.message()));
  }
  const std::string job_id = event.job_id().empty() ? event.job().job_id() : event.job_id();
  std::cerr << "unlearnctl: request " << effective.request_id << " accepted as job " << job_id
            << (event.duplicate() ? " (duplicate: the job already existed)" : "") << std::endl;
  if (!connection.options().json) std::cout << job_id << std::endl;
  if (!effective.wait) {
    Abandon(context, *stream);
    return kExitOk;
  }

  ProgressDisplay progress(/*enabled=*/true);
  if (event.duplicate() || IsTerminal(event.job().state())) {
    // The job already existed: follow it like `jobs watch` does.
    Abandon(context, *stream);
    return Follow(connection, job_id, effective.reconnect_timeout_seconds,
                  /*reconnecting=*/false, progress);
  }
  v1::ErasureEvent terminal;
  if (ReadUntilTerminal(*stream, job_id, progress, &terminal)) {
    Abandon(context, *stream);
    return ReportTerminal(connection, terminal);
  }
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return connection.ReportRpcError(status);
  }
  progress.Finish();
  std::cerr << "unlearnctl: lost the stream to " << connection.options().server << " ("
            << StatusCodeName(status.error_code()) << ": " << status.error_message()
            << "); reconnecting to follow job " << job_id << std::endl;
  return Follow(connection, job_id, effective.reconnect_timeout_seconds,
                /*reconnecting=*/true, progress);
}

int RunWatch(Connection& connection, const std::string& job_id, double reconnect_timeout_seconds) {
  ProgressDisplay progress(/*enabled=*/true);
  return Follow(connection, job_id, reconnect_timeout_seconds,
                /*reconnecting=*/false, progress);
}

}  // namespace unlearning::client
