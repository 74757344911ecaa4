#include "client/connection.h"

#include <iostream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include "client/exit_codes.h"

namespace unlearning::client {
namespace {

constexpr double kDefaultUnaryTimeoutSeconds = 30;
// Certificates, job lists and large forget sets can exceed gRPC's 4 MiB
// default.
constexpr int kMaxMessageBytes = 256 << 20;

std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

}  // namespace

Connection::Connection(const GlobalOptions& options) : options_(options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Reconnect quickly after a server restart (the default backoff grows to two
  // minutes).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options_.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls_ca_pem;
    ssl.pem_cert_chain = options_.tls_cert_pem;
    ssl.pem_private_key = options_.tls_key_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  channel_ = grpc::CreateCustomChannel(options_.server, credentials, args);
  models_ = v1::ModelService::NewStub(channel_);
  erasure_ = v1::ErasureService::NewStub(channel_);
  inference_ = v1::InferenceService::NewStub(channel_);
}

void Connection::Authorize(grpc::ClientContext& context) const {
  if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
}

void Connection::PrepareUnary(grpc::ClientContext& context) const {
  Authorize(context);
  context.set_deadline(DeadlineIn(options_.timeout_seconds > 0 ? options_.timeout_seconds
                                                               : kDefaultUnaryTimeoutSeconds));
}

void Connection::PrepareStream(grpc::ClientContext& context) const {
  Authorize(context);
  if (options_.timeout_seconds > 0) {
    context.set_deadline(DeadlineIn(options_.timeout_seconds));
  }
}

int Connection::ReportRpcError(const grpc::Status& status) const {
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (message.find("connect") != std::string::npos || message.empty())) {
    message =
        absl::StrCat("cannot reach unlearnd at ", options_.server, " (", message,
                     "); is the server running? (--server / UNLEARN_SERVER)",
                     options_.tls_ca_pem.empty()
                         ? " (if the server uses TLS: --tls-ca FILE or UNLEARN_TLS_CA)"
                         : "; with TLS: does --tls-ca sign the server's certificate, and "
                           "does the server want a client certificate (--tls-cert/--tls-key)?");
  } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE && options_.tls_ca_pem.empty() &&
             message.find("ssl") != std::string::npos) {
    message =
        absl::StrCat(message, " (the server speaks TLS: pass --tls-ca FILE or UNLEARN_TLS_CA)");
  } else if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    message = absl::StrCat(message,
                           options_.token.empty()
                               ? " (hint: pass --token-file FILE or set UNLEARN_TOKEN_FILE)"
                               : " (hint: the token in --token-file is not in the server's token "
                                 "file)");
  } else if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    message = absl::StrCat(message, " (hint: use a token with the needed role, or ask an admin)");
  }
  return Fail(kExitRpc, absl::StrCat(StatusCodeName(status.error_code()), ": ", message));
}

std::string StatusCodeName(grpc::StatusCode code) {
  // gRPC's numeric codes are absl's, which names them the same way.
  const std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? absl::StrCat("CODE_", static_cast<int>(code)) : name;
}

int Fail(int exit_code, const std::string& message) {
  std::cerr << "unlearnctl: " << message << std::endl;
  return exit_code;
}

}  // namespace unlearning::client
