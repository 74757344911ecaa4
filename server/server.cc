#include "server/server.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "core/certs/ed25519.h"
#include "core/common/sha256.h"
#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/methods/method_registry.h"

namespace unlearning::server {
namespace {

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address,
                                                          const char* flag) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be HOST:PORT (e.g. 127.0.0.1:9464), got '", address, "'"));
  }
  return std::make_pair(address.substr(0, colon), port);
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", flag, " '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " '", path, "' is not a PEM file"));
  }
  return text.str();
}

bool IsLoopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host == "::1" ||
         absl::StartsWith(host, "127.");
}

// The gRPC port's credentials: TLS (mTLS with a client CA) or plaintext.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcCredentials(
    const ServerOptions& options) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (options.tls_cert.empty()) {
    if (!options.tls_client_ca.empty()) {
      return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_reload_seconds < 0) {
    return absl::InvalidArgumentError("--tls-reload-seconds must be >= 0 (0 = read once)");
  }
  grpc::SslServerCredentialsOptions ssl;
  UNL_ASSIGN_OR_RETURN(std::string cert, ReadPem(options.tls_cert, "--tls-cert"));
  UNL_ASSIGN_OR_RETURN(std::string key, ReadPem(options.tls_key, "--tls-key"));
  ssl.pem_key_cert_pairs.push_back({key, cert});
  if (!options.tls_client_ca.empty()) {
    UNL_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(options.tls_client_ca, "--tls-client-ca"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  if (options.tls_reload_seconds == 0) return grpc::SslServerCredentials(ssl);
  // gRPC's file watcher re-reads the files every tls_reload_seconds and hands new handshakes
  // what it read (connections already open keep their certificate).
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.tls_key, options.tls_cert, options.tls_client_ca,
      static_cast<unsigned int>(options.tls_reload_seconds));
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (!options.tls_client_ca.empty()) {
    tls.watch_root_certs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

// SHA-256 over the TLS files' contents (cert, key, client CA), "" if one cannot be read.
std::string TlsFilesSha256(const ServerOptions& options) {
  std::string all;
  for (const std::string* path : {&options.tls_cert, &options.tls_key, &options.tls_client_ca}) {
    if (path->empty()) continue;
    std::ifstream in(*path, std::ios::binary);
    if (!in) return std::string();
    std::ostringstream text;
    text << in.rdbuf();
    absl::StrAppend(&all, path->size(), ":", *path, text.str().size(), ":", text.str());
  }
  return core::Sha256Hex(all);
}

// What a finished job keeps of its journaled request: the request with every text record's and
// template's content cleared, so the counts (forget_examples, retain and template counts), the
// method, thresholds and class ids stay and the data to erase goes. An unparsable blob keeps
// nothing.
std::string RedactRequest(const std::string& blob) {
  v1::ErasureRequest request;
  if (!request.ParseFromString(blob)) return std::string();
  if (request.has_text()) {
    v1::TextErasure* text = request.mutable_text();
    for (v1::TextExample& e : *text->mutable_forget_set()) e.Clear();
    for (v1::TextExample& e : *text->mutable_retain_set()) e.Clear();
    for (std::string& t : *text->mutable_template_answers()) t.clear();
  }
  return request.SerializeAsString();
}

}  // namespace

absl::StatusOr<std::unique_ptr<UnlearningServer>> UnlearningServer::Start(
    const ServerOptions& options) {
  std::unique_ptr<UnlearningServer> s(new UnlearningServer());
  s->options_ = options;
  if (options.methods == nullptr || options.families == nullptr) {
    return absl::InvalidArgumentError("server options need a method and a family registry");
  }
  if (options.workers < 1 || options.queue_capacity < 1 || options.max_message_bytes < 1024 ||
      options.max_erase_streams < 1) {
    return absl::InvalidArgumentError(
        "--workers, --queue-capacity and --max-erase-streams must be >= 1 and "
        "--max-message-bytes >= 1024");
  }
  UNL_ASSIGN_OR_RETURN(s->auth_, Authorizer::Create(options.auth));
  UNL_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                       GrpcCredentials(options));
  {
    UNL_ASSIGN_OR_RETURN(auto hp, SplitHostPort(options.listen, "--listen"));
    if (options.auth.insecure) {
      std::cerr << "unlearnd: WARNING: --insecure: NO AUTHENTICATION. Every caller that reaches "
                << options.listen << " may load, roll back and erase any model"
                << (IsLoopback(hp.first) ? " (loopback only)"
                                         : " -- AND IT IS NOT A LOOPBACK ADDRESS")
                << ". Use --token-file in production (docs/security.md)." << std::endl;
    } else {
      std::cerr << "unlearnd: authentication: " << s->auth_->tokens() << " tokens ("
                << s->auth_->expired_tokens() << " expired) from " << options.auth.token_file
                << std::endl;
    }
    if (options.tls_cert.empty() && !IsLoopback(hp.first)) {
      std::cerr << "unlearnd: WARNING: serving plaintext gRPC (no --tls-cert) on non-loopback "
                << options.listen << ": requests"
                << (options.auth.insecure ? "" : " and bearer tokens")
                << " cross the network unencrypted" << std::endl;
    }
  }
  UNL_ASSIGN_OR_RETURN(torch::Device device,
                       core::TorchCall("--device", [&]() -> absl::StatusOr<torch::Device> {
                         return torch::Device(options.device);
                       }));
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create --data-dir '", options.data_dir, "': ", ec.message()));
  }
  const std::string journal_path =
      (std::filesystem::path(options.data_dir) / "journal.sqlite").string();
  JournalOptions journal_options;
  journal_options.retain_payload = options.retain_forget_payload;
  journal_options.redact_payload = RedactRequest;
  UNL_ASSIGN_OR_RETURN(s->journal_, Journal::Open(journal_path, journal_options));
  UNL_ASSIGN_OR_RETURN(s->store_, ModelStore::Open(options.data_dir));
  {
    const bool given = !options.signing_key_file.empty();
    const std::string key_path =
        given ? options.signing_key_file
              : (std::filesystem::path(options.data_dir) / "signing_key.pem").string();
    absl::StatusOr<core::certs::SigningKey> key =
        core::certs::LoadOrCreateKeyFile(key_path, /*create=*/!given);
    if (!key.ok()) {
      return absl::Status(key.status().code(),
                          absl::StrCat("certificate signing key: ", key.status().message()));
    }
    s->signing_key_ = std::make_unique<core::certs::SigningKey>(*std::move(key));
    UNL_RETURN_IF_ERROR(core::certs::WritePublicKeyFiles(
        *s->signing_key_, (std::filesystem::path(options.data_dir) / "signing_key.pub").string()));
    std::cerr << "unlearnd: certificates signed with Ed25519 key " << s->signing_key_->key_id()
              << " (" << key_path << "; public key in " << options.data_dir
              << "/signing_key.pub.pem)" << std::endl;
  }
  s->metrics_ = std::make_unique<Metrics>(options.server_version);
  if (!options.metrics_listen.empty()) {
    UNL_ASSIGN_OR_RETURN(auto hp, SplitHostPort(options.metrics_listen, "--metrics-listen"));
    MetricsTls tls;
    if (options.metrics_tls && !options.tls_cert.empty()) {
      tls.cert_file = options.tls_cert;
      tls.key_file = options.tls_key;
      tls.client_ca_file = options.tls_client_ca;
    }
    Metrics::ScrapeAuthorizer authorize;
    if (!s->auth_->insecure() && !options.metrics_public) {
      Authorizer* auth = s->auth_.get();  // outlives the metrics server (stopped first)
      authorize = [auth](const std::string& authorization, const std::string& peer) {
        return auth->AuthorizeMetricsScrape(authorization, peer);
      };
    } else if (!s->auth_->insecure()) {
      std::cerr << "unlearnd: WARNING: --metrics-public: /metrics answers without a bearer token"
                << std::endl;
    }
    UNL_ASSIGN_OR_RETURN(int port,
                         s->metrics_->Start(hp.first, hp.second, tls, std::move(authorize)));
    s->metrics_address_ = absl::StrCat(hp.first, ":", port);
  }

  s->models_ = std::make_unique<ModelManager>(s->journal_.get(), s->store_.get(), &s->registry_,
                                              s->metrics_.get(), options.families, device,
                                              options.purge_grace_seconds, s->signing_key_.get());
  UNL_RETURN_IF_ERROR(s->models_->RestoreAll());
  if (options.purge_grace_seconds >= 0) {
    // Versions that fell due while the server was down (a grace period survives a restart).
    absl::StatusOr<int> purged = s->models_->ApplyRetention();
    if (!purged.ok()) {
      std::cerr << "unlearnd: retention: startup sweep failed (retried every minute): "
                << purged.status().message() << std::endl;
    }
    // With a grace period, often enough that a version goes within a minute of falling due;
    // with none, publishing purges at once and this is only a backstop.
    const int64_t grace = options.purge_grace_seconds;
    s->retention_ = std::make_unique<PeriodicTask>(
        absl::Seconds(grace > 0 ? std::clamp<int64_t>(grace, 1, 60) : 60),
        [raw = s.get()] { raw->SweepRetention(); });
  }
  for (const auto& [id, dir] : options.models) {
    if (s->registry_.Contains(id)) continue;  // already journaled: its published versions win
    auto status = s->models_->LoadNew(id, dir);
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("--model ", id, "=", dir, ": ", status.message()));
    }
  }

  UnlearningServer* raw = s.get();
  JobRunnerOptions runner_options;
  runner_options.server_version = options.server_version;
  runner_options.signing_key = s->signing_key_.get();
  s->runner_ = std::make_unique<JobRunner>(
      s->journal_.get(), s->store_.get(), s->models_.get(), &s->events_, s->metrics_.get(),
      options.methods, runner_options, [raw] { return raw->scheduler_->shutting_down(); });
  s->scheduler_ = std::make_unique<Scheduler>(
      options.workers, options.queue_capacity,
      [raw](const std::string& job_id, const std::string& model_id,
            const core::CancellationToken* cancel) {
        raw->metrics_->SetQueueDepth(model_id, raw->scheduler_->QueueDepth(model_id));
        raw->metrics_->SetRunningJobs(raw->scheduler_->Running());
        raw->runner_->Run(job_id, cancel);
        raw->metrics_->SetRunningJobs(raw->scheduler_->Running() - 1);
      });

  ErasureControllerDeps deps;
  deps.journal = s->journal_.get();
  deps.models = s->models_.get();
  deps.scheduler = s->scheduler_.get();
  deps.events = &s->events_;
  deps.metrics = s->metrics_.get();
  deps.methods = options.methods;
  deps.limits = options.limits;
  deps.signing_key = s->signing_key_.get();
  s->erasure_ = std::make_unique<ErasureController>(deps);
  s->model_service_ = std::make_unique<ModelServiceImpl>(s->models_.get(), s->auth_.get());
  s->erasure_service_ = std::make_unique<ErasureServiceImpl>(s->erasure_.get(), s->auth_.get(),
                                                             options.max_erase_streams);
  s->inference_service_ = std::make_unique<InferenceServiceImpl>(
      s->models_.get(), s->metrics_.get(), InferenceServiceImpl::kDefaultWorkers, s->auth_.get());
  UNL_ASSIGN_OR_RETURN(s->recovered_jobs_, s->erasure_->RecoverJobs());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  UNL_ASSIGN_OR_RETURN(auto hp, SplitHostPort(options.listen, "--listen"));
  builder.AddListeningPort(options.listen, credentials, &port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(s->model_service_.get());
  builder.RegisterService(s->erasure_service_.get());
  builder.RegisterService(s->inference_service_.get());
  s->grpc_ = builder.BuildAndStart();
  if (!s->grpc_ || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on --listen ", options.listen,
                                               " (address in use or not local?)"));
  }
  s->grpc_address_ = absl::StrCat(hp.first, ":", port);
  if (!options.tls_cert.empty() && options.tls_reload_seconds > 0) {
    s->tls_files_sha256_ = TlsFilesSha256(options);
    s->tls_watch_ = std::make_unique<PeriodicTask>(absl::Seconds(options.tls_reload_seconds),
                                                   [raw] { raw->CheckTlsFiles(); });
  }
  if (auto* health = s->grpc_->GetHealthCheckService()) {
    health->SetServingStatus(true);
    health->SetServingStatus("unlearning.v1.ErasureService", true);
    health->SetServingStatus("unlearning.v1.InferenceService", true);
    health->SetServingStatus("unlearning.v1.ModelService", true);
  }
  return s;
}

void UnlearningServer::SweepRetention() {
  absl::StatusOr<int> purged = models_->ApplyRetention();
  if (!purged.ok()) {
    std::cerr << "unlearnd: retention: sweep failed (retried): " << purged.status().message()
              << std::endl;
  }
}

void UnlearningServer::CheckTlsFiles() {
  const std::string sha = TlsFilesSha256(options_);
  if (sha.empty() || sha == tls_files_sha256_) return;  // unreadable mid-rotation: next time
  std::cerr << "unlearnd: TLS: the certificate files changed; new gRPC connections get them "
               "within --tls-reload-seconds"
            << std::endl;
  if (!metrics_address_.empty() && options_.metrics_tls) {
    MetricsTls tls;
    tls.cert_file = options_.tls_cert;
    tls.key_file = options_.tls_key;
    tls.client_ca_file = options_.tls_client_ca;
    const absl::Status reloaded = metrics_->ReloadTls(tls);
    if (!reloaded.ok()) {
      // A key that does not match the certificate (half-way through a rotation): keep serving
      // the old pair and look again next period.
      std::cerr << "unlearnd: TLS: /metrics keeps its certificate: " << reloaded.message()
                << std::endl;
      return;
    }
    std::cerr << "unlearnd: TLS: /metrics serves the new certificate" << std::endl;
  }
  tls_files_sha256_ = sha;
}

void UnlearningServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (tls_watch_) tls_watch_->Stop();
  if (retention_) retention_->Stop();
  if (grpc_) {
    if (auto* health = grpc_->GetHealthCheckService()) health->SetServingStatus(false);
  }
  if (scheduler_) scheduler_->Shutdown(grace);
  // No stream waits on a thread: end them now rather than at gRPC's deadline.
  if (erasure_service_) erasure_service_->Shutdown();
  if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (metrics_) metrics_->Stop();
}

void UnlearningServer::Wait() {
  if (grpc_) grpc_->Wait();
}

UnlearningServer::~UnlearningServer() { Shutdown(absl::ZeroDuration()); }

}  // namespace unlearning::server
