// unlearnd: the machine-unlearning server.
//
//   unlearnd --data-dir /var/lib/unlearnd --model demo=/models/demo
//            --listen 127.0.0.1:50051 --metrics-listen 127.0.0.1:9464
//            --token-file tokens.jsonl [--tls-cert cert.pem --tls-key key.pem] | --insecure
//
// Authentication is required: --token-file, or an explicit --insecure (docs/security.md).
// SIGHUP reloads the token file (a bad file keeps the current tokens) and reopens the audit log.
// SIGTERM / SIGINT drain gracefully: no new requests, running jobs get --drain-timeout seconds to
// finish (interrupted jobs resume at the next start; nothing accepted is lost).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/common/threads.h"
#include "server/server.h"

namespace {

bool WriteReadyFile(const std::string& path, const nlohmann::json& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content.dump() << "\n";
    if (!out.good()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

}  // namespace

int main(int argc, char** argv) {
  unlearning::server::ServerOptions options;
  int threads = 0;
  int job_threads = -1;
  int drain_timeout_seconds = 60;
  std::vector<std::string> model_flags;
  std::string ready_file;

  CLI::App app{"unlearnd: machine-unlearning server (gRPC API unlearning.v1)"};
  app.add_option("--listen", options.listen, "gRPC address HOST:PORT (port 0 = any free port)")
      ->capture_default_str();
  app.add_option("--metrics-listen", options.metrics_listen,
                 "Prometheus /metrics address HOST:PORT (empty = off)")
      ->capture_default_str();
  app.add_option("--data-dir", options.data_dir,
                 "journal (journal.sqlite) and model store (models/<id>/v<N>)")
      ->capture_default_str();
  app.add_option("--model", model_flags,
                 "ID=DIR: load a Hugging Face-layout model directory at startup (repeatable; "
                 "ignored if the journal already has ID)");
  app.add_option("--device", options.device, "cpu | cuda | cuda:N")->capture_default_str();
  app.add_option("--threads", threads,
                 "LibTorch intra-op threads (0 = automatic: one per core with the OpenMP "
                 "OpenBLAS, 1 with the pthreads OpenBLAS)")
      ->check(CLI::Range(0, 1024));
  app.add_option(
         "--job-threads", job_threads,
         "intra-op threads of an erasure job (0 = as --threads; default -1 = one fewer than "
         "--threads, at least 1, so inference keeps a core while a job trains; "
         "bench/serve_latency.sh measures the trade)")
      ->check(CLI::Range(-1, 1024))
      ->capture_default_str();
  app.add_option("--workers", options.workers, "jobs run in parallel (on different models)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--queue-capacity", options.queue_capacity, "queued jobs per model")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-erase-streams", options.max_erase_streams,
                 "Erase streams open at once; more are refused with RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--max-message-bytes", options.max_message_bytes, "largest gRPC message accepted")
      ->check(CLI::Range(1024, 1 << 30))
      ->capture_default_str();
  app.add_option("--max-forget-examples", options.limits.max_forget_examples,
                 "largest forget set per request")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  app.add_option("--drain-timeout", drain_timeout_seconds,
                 "seconds running jobs get to finish on SIGTERM")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  app.add_flag("--retain-forget-payload", options.retain_forget_payload,
               "keep each request's forget set (and retain set, templates) in the journal after "
               "its job ends (default: purged when the job ends; only the request's SHA-256, its "
               "counts and the certificate stay)");
  app.add_option("--purge-grace-seconds", options.purge_grace_seconds,
                 "seconds the model versions older than a completed erasure (they still hold the "
                 "erased data) are kept after it is published before their files are deleted "
                 "(0 = at once; negative = keep forever, logged at startup)")
      ->capture_default_str();
  app.add_option("--signing-key", options.signing_key_file,
                 "Ed25519 private key (PKCS#8 PEM, mode 0600) certificates are signed with "
                 "(default: <data-dir>/signing_key.pem, generated on the first start)");
  app.add_option("--token-file", options.auth.token_file,
                 "bearer tokens: JSON lines {\"name\", \"sha256\", \"roles\", \"models\"} "
                 "(docs/security.md; unlearnctl token hash makes a line); reloaded on SIGHUP");
  app.add_flag("--insecure", options.auth.insecure,
               "serve WITHOUT authentication: every caller may load, roll back and erase "
               "(required when there is no --token-file; logged as a warning)");
  app.add_option("--audit-log", options.auth.audit_log,
                 "append one JSON line per RPC (caller, peer, RPC, model, ids, status; never "
                 "request data) to this file; reopened on SIGHUP");
  app.add_option("--tls-cert", options.tls_cert,
                 "PEM certificate chain: serve gRPC (and /metrics) over TLS");
  app.add_option("--tls-key", options.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", options.tls_client_ca,
                 "PEM CA: require client certificates signed by it (mTLS) on gRPC and /metrics");
  app.add_option("--tls-reload-seconds", options.tls_reload_seconds,
                 "check the TLS files this often for a rotated certificate; new connections on "
                 "both ports get it, open ones keep theirs (0 = read once at start)")
      ->capture_default_str();
  app.add_flag_function(
      "--metrics-plaintext", [&](int64_t) { options.metrics_tls = false; },
      "serve /metrics over plain HTTP even with --tls-cert");
  app.add_flag("--metrics-public", options.metrics_public,
               "with --token-file, serve /metrics without a bearer token (else it needs a token "
               "with the metrics or admin role)");
  app.add_option("--ready-file", ready_file,
                 "write {\"grpc\",\"metrics\",\"pid\"} JSON here once serving");
  CLI11_PARSE(app, argc, argv);

  for (const std::string& flag : model_flags) {
    const size_t eq = flag.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == flag.size()) {
      std::cerr << "unlearnd: --model must be ID=DIR, got '" << flag << "'\n";
      return 2;
    }
    options.models.emplace_back(flag.substr(0, eq), flag.substr(eq + 1));
  }
  const unlearning::core::ThreadConfig thread_config = unlearning::core::ConfigureThreads(threads);
  if (job_threads < 0) job_threads = std::max(1, thread_config.threads - 1);
  unlearning::core::SetJobThreads(job_threads);

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::cerr << "unlearnd: retention: forget-set payloads "
            << (options.retain_forget_payload
                    ? "KEPT in the journal after their jobs end (--retain-forget-payload)"
                    : "purged from the journal when their jobs end")
            << "; model versions older than a completed erasure ";
  if (options.purge_grace_seconds < 0) {
    std::cerr << "KEPT FOREVER (--purge-grace-seconds " << options.purge_grace_seconds
              << "): the erased data stays on disk in them";
  } else if (options.purge_grace_seconds == 0) {
    std::cerr << "purged as soon as the erasure is published";
  } else {
    std::cerr << "purged " << options.purge_grace_seconds
              << " s after the erasure is published (--purge-grace-seconds)";
  }
  std::cerr << std::endl;

  auto server = unlearning::server::UnlearningServer::Start(options);
  if (!server.ok()) {
    std::cerr << "unlearnd: " << server.status().message() << "\n";
    return 1;
  }
  std::cerr << "unlearnd: serving gRPC on " << (*server)->grpc_address();
  if (!(*server)->metrics_address().empty()) {
    std::cerr << ", metrics on http://" << (*server)->metrics_address() << "/metrics";
  }
  std::cerr << " (data dir " << options.data_dir << ", " << thread_config.Describe()
            << "; jobs: " << (job_threads > 0 ? job_threads : thread_config.threads) << " threads, "
            << (*server)->recovered_jobs() << " jobs recovered)" << std::endl;
  if (!ready_file.empty() && !WriteReadyFile(ready_file, {{"grpc", (*server)->grpc_address()},
                                                          {"metrics", (*server)->metrics_address()},
                                                          {"pid", static_cast<int>(getpid())}})) {
    std::cerr << "unlearnd: cannot write --ready-file " << ready_file << "\n";
    return 1;
  }

  int signal = 0;
  while (true) {
    sigwait(&stop_signals, &signal);
    if (signal != SIGHUP) break;
    const absl::Status reloaded = (*server)->ReloadAuth();
    if (reloaded.ok()) {
      std::cerr << "unlearnd: SIGHUP: reloaded the token file (" << (*server)->auth().tokens()
                << " tokens, " << (*server)->auth().expired_tokens()
                << " expired) and reopened the audit log" << std::endl;
    } else {
      std::cerr << "unlearnd: ERROR: SIGHUP reload failed: " << reloaded.message() << std::endl;
    }
  }
  std::cerr << "unlearnd: " << (signal == SIGTERM ? "SIGTERM" : "SIGINT") << ": draining (up to "
            << drain_timeout_seconds << " s)" << std::endl;
  (*server)->Shutdown(absl::Seconds(drain_timeout_seconds));
  std::cerr << "unlearnd: stopped" << std::endl;
  return 0;
}
