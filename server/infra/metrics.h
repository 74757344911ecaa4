// Prometheus metrics of the unlearning server: a prometheus-cpp registry with
// typed recording methods (callers never build label maps), served at GET
// /metrics by a cpp-httplib server in the text exposition format 0.0.4.
// prometheus-cpp's civetweb Exposer is deliberately not used: it fails to start
// in a process with OpenBLAS loaded (see ARCHITECTURE.md, environment facts).
//
// Label policy: only bounded labels (model, method, rpc, outcome, code, figure,
// stage). Never a request id, job id, subject or compliance reference.
//
// Families (all prefixed unlearning_):
//   erasure_requests_total{outcome=accepted|rejected|duplicate}        counter
//   erasure_rejections_total{code}                                     counter
//   (gRPC code name) jobs_started_total{method} counter
//   jobs_finished_total{method,outcome=completed|failed|failed_verification|cancelled}
//   counter job_duration_seconds{method} histogram (1 s .. 8 h)
//   queue_depth{model}                                                 gauge
//   running_jobs                                                       gauge
//   job_progress_ratio{model}                                          gauge
//   (0..1, running job) verification_figure{model,figure,stage=before|after,tier=T0|T1|T2}
//   evaluation_suite_info{model,suite}
//   gauge (latest job) model_version{model} gauge (served version)
//   model_publishes_total{model}                                       counter
//   inference_requests_total{model,rpc,code}                           counter
//   inference_latency_seconds{model,rpc} histogram (1 ms .. 2 min)
//   generated_tokens_total{model}                                      counter
//   build_info{version}                                                gauge (=
//   1)
//
// Thread-safety: every method is thread-safe (prometheus-cpp metrics are
// atomic; the label caches and the HTTP server state are guarded by a mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "server/infra/journal.h"

namespace httplib {
class Server;
}
namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace unlearning::server {

enum class ErasureOutcome { kAccepted, kRejected, kDuplicate };
enum class FigureStage { kBefore, kAfter };

// HTTPS for /metrics: PEM files ("" cert_file = plain HTTP). With client_ca_file, scrapers must
// present a certificate signed by it (mTLS).
struct MetricsTls {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
};

class Metrics {
 public:
  // Registers every family. `build_version` is the build_info label.
  explicit Metrics(const std::string& build_version = "dev");
  ~Metrics();  // Stops the HTTP server if running.
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // ---- Serving
  // ------------------------------------------------------------------------------

  // Starts serving GET /metrics on host:port in a background thread (port 0 =
  // any free port). Returns the bound port. kFailedPrecondition if already
  // started; kUnavailable if the address cannot be bound; kInvalidArgument if the TLS files cannot
  // be loaded.
  //
  // `authorize` (optional) decides each GET /metrics from its `Authorization` header value and
  // the peer address: kUnauthenticated answers 401 with `WWW-Authenticate: Bearer`,
  // kPermissionDenied 403, other errors 500; the body is the status message.
  using ScrapeAuthorizer =
      std::function<absl::Status(const std::string& authorization, const std::string& peer)>;
  absl::StatusOr<int> Start(const std::string& host, int port, const MetricsTls& tls = {},
                            ScrapeAuthorizer authorize = nullptr);
  // Swaps the HTTPS listener's certificate, key and client CA: a new listener is built from
  // `tls` first (kInvalidArgument, the old one kept, if the files do not load or the key does not
  // match the certificate), then the old one stops (a scrape in progress finishes) and the new
  // one binds the same address. kFailedPrecondition if not serving over TLS; kUnavailable if the
  // address cannot be bound again (metrics are then off until the next successful reload).
  absl::Status ReloadTls(const MetricsTls& tls);
  // Stops the HTTP server (idempotent).
  void Stop();
  // Bound port, 0 if not serving.
  int port() const;
  // The exposition text (what GET /metrics returns).
  std::string Serialize() const;
  static constexpr const char* kContentType = "text/plain; version=0.0.4";
  // For callers that want to add their own families.
  prometheus::Registry& registry() { return *registry_; }

  // ---- Erasure requests and jobs
  // --------------------------------------------------------------

  // One per SubmitErasure message. For kRejected, `code` is the absl code sent
  // back (its gRPC name, e.g. "INVALID_ARGUMENT", is the
  // erasure_rejections_total label).
  void RecordErasureRequest(ErasureOutcome outcome, absl::StatusCode code = absl::StatusCode::kOk);
  void RecordJobStarted(const std::string& method);
  // `outcome` must be terminal; `seconds` is the wall time from start to
  // finish.
  void RecordJobFinished(const std::string& method, JobState outcome, double seconds);
  void SetQueueDepth(const std::string& model_id, int64_t depth);
  void SetRunningJobs(int64_t running);
  // Fraction done of the running job on the model (step / total_steps), clamped
  // to [0, 1].
  void SetJobProgress(const std::string& model_id, double ratio);
  // Replaces the model's verification figures (stage before/after) with these;
  // figures of the previous job that are absent now are removed. Figure names
  // must match [a-zA-Z_][a-zA-Z0-9_]* (others are skipped).
  // `tiers` gives each figure's tier label ("T0", "T1", "T2"; "T0" when absent).
  void SetVerificationFigures(const std::string& model_id,
                              const std::map<std::string, double>& before,
                              const std::map<std::string, double>& after,
                              const std::map<std::string, std::string>& tiers = {});
  // The evaluation suite (hash) the model's latest figures were computed with:
  // unlearning_evaluation_suite_info{model, suite} = 1 (the previous suite's series is removed).
  void SetEvaluationSuite(const std::string& model_id, const std::string& suite_sha256);
  // The served version changed (publish or rollback). `published` = a new
  // version was published (counts model_publishes_total); false for a rollback
  // or load at startup.
  void SetModelVersion(const std::string& model_id, int64_t version, bool published);

  // ---- Inference
  // ------------------------------------------------------------------------------

  // `rpc` is the RPC name (e.g. "Generate"); `code` the returned status code.
  void RecordInference(const std::string& model_id, const std::string& rpc, absl::StatusCode code,
                       double seconds);
  void AddGeneratedTokens(const std::string& model_id, int64_t tokens);

 private:
  using CounterFamily = prometheus::Family<prometheus::Counter>;
  using GaugeFamily = prometheus::Family<prometheus::Gauge>;
  using HistogramFamily = prometheus::Family<prometheus::Histogram>;

  std::shared_ptr<prometheus::Registry> registry_;
  CounterFamily* erasure_requests_;
  CounterFamily* erasure_rejections_;
  CounterFamily* jobs_started_;
  CounterFamily* jobs_finished_;
  HistogramFamily* job_duration_;
  GaugeFamily* queue_depth_;
  GaugeFamily* running_jobs_;
  GaugeFamily* job_progress_;
  GaugeFamily* verification_figure_;
  GaugeFamily* model_version_;
  CounterFamily* model_publishes_;
  CounterFamily* inference_requests_;
  HistogramFamily* inference_latency_;
  CounterFamily* generated_tokens_;
  GaugeFamily* build_info_;

  mutable absl::Mutex mu_;
  // model -> gauges currently exported for its verification figures.
  std::map<std::string, std::set<prometheus::Gauge*>> figure_gauges_ ABSL_GUARDED_BY(mu_);
  GaugeFamily* evaluation_suite_;
  std::map<std::string, prometheus::Gauge*> suite_gauges_ ABSL_GUARDED_BY(mu_);
  // A configured, unbound server: HTTPS with `tls` when its cert_file is set.
  absl::StatusOr<std::unique_ptr<httplib::Server>> MakeServer(const MetricsTls& tls,
                                                              const ScrapeAuthorizer& authorize);
  // Stops the listener (a scrape in progress finishes); Stop() also forgets the address.
  void StopListener();
  // Binds `server` to host:port (0 = any) and serves it on http_thread_; returns the port.
  absl::StatusOr<int> Listen(std::unique_ptr<httplib::Server> server, const std::string& host,
                             int port);
  std::unique_ptr<httplib::Server> http_ ABSL_GUARDED_BY(mu_);
  std::string host_ ABSL_GUARDED_BY(mu_);
  bool tls_ ABSL_GUARDED_BY(mu_) = false;
  int last_port_ ABSL_GUARDED_BY(mu_) = 0;  // kept across a reload's stop
  ScrapeAuthorizer authorize_ ABSL_GUARDED_BY(mu_);
  std::thread http_thread_ ABSL_GUARDED_BY(mu_);
  int port_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace unlearning::server
