#include "server/infra/metrics.h"

// Debian's libcpp-httplib is built with OpenSSL: its SSLServer serves /metrics over HTTPS.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#include <httplib.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include "core/common/status_macros.h"

namespace unlearning::server {
namespace {

// Job wall time: a second to eight hours.
const prometheus::Histogram::BucketBoundaries& JobDurationBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800};
  return *b;
}

// Inference latency: a millisecond to two minutes (long generations).
const prometheus::Histogram::BucketBoundaries& InferenceBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return *b;
}

const char* OutcomeName(ErasureOutcome outcome) {
  switch (outcome) {
    case ErasureOutcome::kAccepted:
      return "accepted";
    case ErasureOutcome::kRejected:
      return "rejected";
    case ErasureOutcome::kDuplicate:
      return "duplicate";
  }
  return "unknown";
}

// Figure names are label values ("forget.answer_probability"); keep them to a bounded, readable
// charset: [a-zA-Z_][a-zA-Z0-9_.]*.
bool IsValidFigureName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && ((c >= '0' && c <= '9') || c == '.'))) return false;
  }
  return true;
}

template <typename Builder>
auto& Build(Builder builder, prometheus::Registry& registry, const char* name, const char* help) {
  return builder.Name(name).Help(help).Register(registry);
}

}  // namespace

Metrics::Metrics(const std::string& build_version)
    : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  erasure_requests_ = &Build(prometheus::BuildCounter(), r, "unlearning_erasure_requests_total",
                             "Erasure requests received, by outcome (accepted, rejected, "
                             "duplicate resend of an already accepted request id).");
  erasure_rejections_ = &Build(prometheus::BuildCounter(), r, "unlearning_erasure_rejections_total",
                               "Rejected erasure requests by gRPC status code.");
  jobs_started_ = &Build(prometheus::BuildCounter(), r, "unlearning_jobs_started_total",
                         "Unlearning job runs started (including retries after a restart).");
  jobs_finished_ = &Build(prometheus::BuildCounter(), r, "unlearning_jobs_finished_total",
                          "Unlearning jobs finished, by method and outcome.");
  job_duration_ = &Build(prometheus::BuildHistogram(), r, "unlearning_job_duration_seconds",
                         "Wall time of finished unlearning jobs, from start to finish.");
  queue_depth_ = &Build(prometheus::BuildGauge(), r, "unlearning_queue_depth",
                        "Queued (not yet running) unlearning jobs per model.");
  running_jobs_ = &Build(prometheus::BuildGauge(), r, "unlearning_running_jobs",
                         "Unlearning jobs running now.");
  job_progress_ = &Build(prometheus::BuildGauge(), r, "unlearning_job_progress_ratio",
                         "Fraction of steps done by the running job on the model (0..1).");
  verification_figure_ = &Build(prometheus::BuildGauge(), r, "unlearning_verification_figure",
                                "Verification figures of the latest verified job per model "
                                "(completed or failed verification), before and after, with "
                                "the tier each rests on.");
  evaluation_suite_ = &Build(prometheus::BuildGauge(), r, "unlearning_evaluation_suite_info",
                             "The evaluation suite (SHA-256) of the model's latest figures; 1.");
  model_version_ = &Build(prometheus::BuildGauge(), r, "unlearning_model_version",
                          "Version of the model currently served.");
  model_publishes_ = &Build(prometheus::BuildCounter(), r, "unlearning_model_publishes_total",
                            "New model versions published by unlearning jobs.");
  inference_requests_ = &Build(prometheus::BuildCounter(), r, "unlearning_inference_requests_total",
                               "Inference RPCs by model, RPC and gRPC status code.");
  inference_latency_ =
      &Build(prometheus::BuildHistogram(), r, "unlearning_inference_latency_seconds",
             "Inference RPC latency by model and RPC.");
  generated_tokens_ = &Build(prometheus::BuildCounter(), r, "unlearning_generated_tokens_total",
                             "Tokens generated by the language models.");
  build_info_ = &Build(prometheus::BuildGauge(), r, "unlearning_build_info",
                       "Build information; the value is always 1.");

  // Pre-create the fixed series so dashboards and alerts see zeros instead of
  // gaps.
  for (ErasureOutcome o :
       {ErasureOutcome::kAccepted, ErasureOutcome::kRejected, ErasureOutcome::kDuplicate}) {
    erasure_requests_->Add({{"outcome", OutcomeName(o)}});
  }
  running_jobs_->Add({});
  build_info_->Add({{"version", build_version}}).Set(1);
}

Metrics::~Metrics() { Stop(); }

// ---- Serving
// ------------------------------------------------------------------------------------

absl::StatusOr<int> Metrics::Start(const std::string& host, int port, const MetricsTls& tls,
                                   ScrapeAuthorizer authorize) {
  {
    absl::MutexLock lock(&mu_);
    if (http_ != nullptr) return absl::FailedPreconditionError("metrics: already serving");
  }
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: bad port ", port));
  }
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<httplib::Server> server, MakeServer(tls, authorize));
  UNL_ASSIGN_OR_RETURN(const int bound, Listen(std::move(server), host, port));
  absl::MutexLock lock(&mu_);
  host_ = host;
  tls_ = !tls.cert_file.empty();
  last_port_ = bound;
  authorize_ = std::move(authorize);
  return bound;
}

absl::Status Metrics::ReloadTls(const MetricsTls& tls) {
  std::string host;
  int port = 0;
  ScrapeAuthorizer authorize;
  {
    absl::MutexLock lock(&mu_);
    if (!tls_ || last_port_ == 0) {
      return absl::FailedPreconditionError("metrics: not serving over TLS");
    }
    host = host_;
    port = last_port_;
    authorize = authorize_;
  }
  if (tls.cert_file.empty()) return absl::InvalidArgumentError("metrics: no certificate file");
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<httplib::Server> server, MakeServer(tls, authorize));
  StopListener();
  return Listen(std::move(server), host, port).status();
}

absl::StatusOr<std::unique_ptr<httplib::Server>> Metrics::MakeServer(
    const MetricsTls& tls, const ScrapeAuthorizer& authorize) {
  std::unique_ptr<httplib::Server> server;
  if (tls.cert_file.empty()) {
    server = std::make_unique<httplib::Server>();
  } else {
    // Loads the chain and the key into one SSL_CTX; OpenSSL refuses a key that does not match.
    auto ssl = std::make_unique<httplib::SSLServer>(
        tls.cert_file.c_str(), tls.key_file.c_str(),
        tls.client_ca_file.empty() ? nullptr : tls.client_ca_file.c_str());
    if (!ssl->is_valid()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics: cannot load the TLS certificate/key (", tls.cert_file, ", ",
                       tls.key_file, tls.client_ca_file.empty() ? "" : ", " + tls.client_ca_file,
                       "): unreadable, not PEM, or the key does not match the certificate"));
    }
    server = std::move(ssl);
  }
  // httplib's default also sets SO_REUSEPORT, which would let a second process silently share
  // the port; keep only SO_REUSEADDR (fast restarts, and a TLS reload binding the port again).
  server->set_socket_options([](auto sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<void*>(&yes), sizeof(yes));
  });
  server->Get("/metrics", [this, authorize](const httplib::Request& req, httplib::Response& res) {
    if (authorize) {
      const absl::Status allowed = authorize(req.get_header_value("Authorization"),
                                             absl::StrCat(req.remote_addr, ":", req.remote_port));
      if (!allowed.ok()) {
        if (allowed.code() == absl::StatusCode::kUnauthenticated) {
          res.status = 401;
          res.set_header("WWW-Authenticate", "Bearer realm=\"unlearnd\"");
        } else {
          res.status = allowed.code() == absl::StatusCode::kPermissionDenied ? 403 : 500;
        }
        res.set_content(std::string(allowed.message()) + "\n", "text/plain");
        return;
      }
    }
    res.set_content(Serialize(), kContentType);
  });
  return server;
}

absl::StatusOr<int> Metrics::Listen(std::unique_ptr<httplib::Server> server,
                                    const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = server->bind_to_any_port(host);
  } else if (!server->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot bind ", host, ":", port));
  }
  absl::MutexLock lock(&mu_);
  if (http_ != nullptr) return absl::FailedPreconditionError("metrics: already serving");
  httplib::Server* raw = server.get();
  http_ = std::move(server);
  port_ = bound;
  http_thread_ = std::thread([raw] { raw->listen_after_bind(); });
  return bound;
}

void Metrics::Stop() {
  StopListener();
  absl::MutexLock lock(&mu_);
  last_port_ = 0;  // stopped for good: no reload starts it again
}

void Metrics::StopListener() {
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  {
    absl::MutexLock lock(&mu_);
    server = std::move(http_);
    thread = std::move(http_thread_);
    port_ = 0;
  }
  if (server != nullptr) server->stop();
  if (thread.joinable()) thread.join();
}

int Metrics::port() const {
  absl::MutexLock lock(&mu_);
  return port_;
}

std::string Metrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

// ---- Erasure requests and jobs
// ------------------------------------------------------------------

void Metrics::RecordErasureRequest(ErasureOutcome outcome, absl::StatusCode code) {
  erasure_requests_->Add({{"outcome", OutcomeName(outcome)}}).Increment();
  if (outcome == ErasureOutcome::kRejected) {
    erasure_rejections_->Add({{"code", absl::StatusCodeToString(code)}}).Increment();
  }
}

void Metrics::RecordJobStarted(const std::string& method) {
  jobs_started_->Add({{"method", method}}).Increment();
}

void Metrics::RecordJobFinished(const std::string& method, JobState outcome, double seconds) {
  jobs_finished_->Add({{"method", method}, {"outcome", JobStateName(outcome)}}).Increment();
  job_duration_->Add({{"method", method}}, JobDurationBuckets()).Observe(std::max(0.0, seconds));
}

void Metrics::SetQueueDepth(const std::string& model_id, int64_t depth) {
  queue_depth_->Add({{"model", model_id}}).Set(static_cast<double>(depth));
}

void Metrics::SetRunningJobs(int64_t running) {
  running_jobs_->Add({}).Set(static_cast<double>(running));
}

void Metrics::SetJobProgress(const std::string& model_id, double ratio) {
  job_progress_->Add({{"model", model_id}}).Set(std::min(1.0, std::max(0.0, ratio)));
}

void Metrics::SetVerificationFigures(const std::string& model_id,
                                     const std::map<std::string, double>& before,
                                     const std::map<std::string, double>& after,
                                     const std::map<std::string, std::string>& tiers) {
  absl::MutexLock lock(&mu_);
  std::set<prometheus::Gauge*> now;
  auto set_all = [&](const std::map<std::string, double>& figures, const char* stage) {
    for (const auto& [figure, value] : figures) {
      if (!IsValidFigureName(figure)) continue;
      auto tier = tiers.find(figure);
      const std::string tier_label =
          tier != tiers.end() && (tier->second == "T1" || tier->second == "T2") ? tier->second
                                                                                : "T0";
      prometheus::Gauge& g = verification_figure_->Add(
          {{"model", model_id}, {"figure", figure}, {"stage", stage}, {"tier", tier_label}});
      g.Set(value);
      now.insert(&g);
    }
  };
  set_all(before, "before");
  set_all(after, "after");
  std::set<prometheus::Gauge*>& previous = figure_gauges_[model_id];
  for (prometheus::Gauge* g : previous) {
    if (now.count(g) == 0) verification_figure_->Remove(g);
  }
  previous = std::move(now);
}

void Metrics::SetEvaluationSuite(const std::string& model_id, const std::string& suite_sha256) {
  absl::MutexLock lock(&mu_);
  auto it = suite_gauges_.find(model_id);
  if (it != suite_gauges_.end()) evaluation_suite_->Remove(it->second);
  prometheus::Gauge& g = evaluation_suite_->Add({{"model", model_id}, {"suite", suite_sha256}});
  g.Set(1.0);
  suite_gauges_[model_id] = &g;
}

void Metrics::SetModelVersion(const std::string& model_id, int64_t version, bool published) {
  model_version_->Add({{"model", model_id}}).Set(static_cast<double>(version));
  if (published) model_publishes_->Add({{"model", model_id}}).Increment();
}

// ---- Inference
// ----------------------------------------------------------------------------------

void Metrics::RecordInference(const std::string& model_id, const std::string& rpc,
                              absl::StatusCode code, double seconds) {
  inference_requests_
      ->Add({{"model", model_id}, {"rpc", rpc}, {"code", absl::StatusCodeToString(code)}})
      .Increment();
  inference_latency_->Add({{"model", model_id}, {"rpc", rpc}}, InferenceBuckets())
      .Observe(std::max(0.0, seconds));
}

void Metrics::AddGeneratedTokens(const std::string& model_id, int64_t tokens) {
  if (tokens <= 0) return;
  generated_tokens_->Add({{"model", model_id}}).Increment(static_cast<double>(tokens));
}

}  // namespace unlearning::server
