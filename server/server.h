// UnlearningServer: the whole service in one object (used by unlearnd's main and by the in-process
// integration tests): journal, model store, registry, scheduler, job runner, gRPC services,
// health + reflection, metrics endpoint.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include <grpcpp/grpcpp.h>

#include "core/app/family_registry.h"
#include "core/methods/method_registry.h"
#include "server/auth.h"
#include "server/erasure_controller.h"
#include "server/erasure_service.h"
#include "server/event_hub.h"
#include "server/inference_service.h"
#include "server/infra/journal.h"
#include "server/infra/metrics.h"
#include "server/infra/model_store.h"
#include "server/infra/periodic_task.h"
#include "server/job_runner.h"
#include "server/model_manager.h"
#include "server/model_registry.h"
#include "server/model_service.h"
#include "server/proto_convert.h"
#include "server/scheduler.h"

namespace unlearning::server {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";         // host:port; port 0 = any free port
  std::string metrics_listen = "127.0.0.1:9464";  // "" disables the metrics endpoint
  std::string data_dir = "unlearnd-data";
  std::string device = "cpu";
  int workers = 1;          // jobs running in parallel (on different models)
  int queue_capacity = 64;  // queued jobs per model
  int max_message_bytes = 64 * 1024 * 1024;
  // Erase streams open at once; one more is refused at open with RESOURCE_EXHAUSTED (an idle
  // stream holds no thread, but each holds its call's memory).
  int max_erase_streams = 1000;
  RequestLimits limits;
  // model id -> directory, loaded at startup unless the journal already has the id.
  std::vector<std::pair<std::string, std::string>> models;
  std::string server_version = "dev";
  // Retention (README "Retention"). false: a job's forget-set payload is purged from the journal
  // when the job ends (only its SHA-256, counts and certificate stay); true keeps it.
  bool retain_forget_payload = false;
  // Seconds the versions older than a completed erasure are kept after it is published before
  // their files are deleted (0 = at once; < 0 = kept forever). Checked after each publish, at
  // startup and every min(grace, 60) seconds (every 60 s with grace 0).
  int64_t purge_grace_seconds = 0;
  // The Ed25519 key certificates are signed with (PKCS#8 PEM, mode 0600). "" = <data_dir>/
  // signing_key.pem, generated on the first start. The public half is published as
  // <data_dir>/signing_key.pub.pem and .pub.hex and over GetSigningKey (docs/certificates.md).
  std::string signing_key_file;
  // Authentication (docs/security.md): a token file, or explicitly none (`auth.insecure`, logged
  // loudly). Start fails when neither is given. `auth.audit_log`: the JSON-lines audit log.
  AuthOptions auth;
  // TLS on the gRPC port: PEM certificate chain and private key files ("" = plaintext). With
  // `tls_client_ca` every client must present a certificate signed by that CA (mTLS).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Serve /metrics over HTTPS with the same certificate, key (and client CA) when tls_cert is set.
  bool metrics_tls = true;
  // Seconds between checks of the TLS files for a rotated certificate (both ports; new
  // connections get the new one, open ones keep theirs). 0 = read once at start.
  int tls_reload_seconds = 10;
  // With a token file, GET /metrics needs a bearer token with the metrics or admin role unless
  // this is set (--metrics-public: the families carry no request data, but model ids and figures).
  bool metrics_public = false;
  // The methods and model families this server offers (tests inject their own). Borrowed; must
  // outlive the server.
  const core::MethodRegistry* methods = &core::MethodRegistry::Builtin();
  const core::FamilyRegistry* families = &core::FamilyRegistry::Builtin();
};

class UnlearningServer {
 public:
  // Opens the data dir, restores models and unfinished jobs, starts gRPC and metrics.
  static absl::StatusOr<std::unique_ptr<UnlearningServer>> Start(const ServerOptions& options);
  ~UnlearningServer();

  // Graceful stop: let running jobs finish within `grace` (interrupted jobs resume at the next
  // start; open Erase streams get their events meanwhile), then end every open Erase stream with
  // UNAVAILABLE, stop gRPC (in-flight unary calls get up to 5 s) and the metrics endpoint.
  void Shutdown(absl::Duration grace);
  void Wait();

  // "127.0.0.1:PORT" actually bound.
  const std::string& grpc_address() const { return grpc_address_; }
  // "127.0.0.1:PORT" of /metrics, "" if disabled.
  const std::string& metrics_address() const { return metrics_address_; }
  int recovered_jobs() const { return recovered_jobs_; }
  Metrics& metrics() { return *metrics_; }
  // Erase streams open now.
  int open_erase_streams() const { return erasure_service_->open_streams(); }
  // Re-reads the token file (a bad file keeps the current tokens and returns the error) and
  // reopens the audit log. unlearnd calls it on SIGHUP.
  absl::Status ReloadAuth() { return auth_->Reload(); }
  const Authorizer& auth() const { return *auth_; }

 private:
  UnlearningServer() = default;

  ServerOptions options_;
  std::unique_ptr<core::certs::SigningKey> signing_key_;
  std::unique_ptr<Authorizer> auth_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<ModelStore> store_;
  std::unique_ptr<Metrics> metrics_;
  ModelRegistry registry_;
  EventHub events_;
  std::unique_ptr<ModelManager> models_;
  std::unique_ptr<JobRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ErasureController> erasure_;
  std::unique_ptr<ModelServiceImpl> model_service_;
  std::unique_ptr<ErasureServiceImpl> erasure_service_;
  std::unique_ptr<InferenceServiceImpl> inference_service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::string grpc_address_;
  std::string metrics_address_;
  int recovered_jobs_ = 0;
  bool shut_down_ = false;
  // Periodic retention sweep (purge_grace_seconds >= 0).
  void SweepRetention();
  std::unique_ptr<PeriodicTask> retention_;
  // The TLS files' watch (tls_reload_seconds > 0 with TLS): gRPC re-reads them itself (its file
  // watcher); this restarts the HTTPS /metrics listener when their contents change.
  void CheckTlsFiles();
  std::string tls_files_sha256_;  // of cert, key and client CA as last loaded (watch thread only)
  std::unique_ptr<PeriodicTask> tls_watch_;
};

}  // namespace unlearning::server
