// The connection to unlearnd: one gRPC channel, the three service stubs,
// deadlines and the one place RPC errors become user-facing messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>

#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::client {

// Global command-line options shared by every subcommand.
struct GlobalOptions {
  // host:port of unlearnd (flag --server, env UNLEARN_SERVER).
  std::string server = "127.0.0.1:50051";
  // Print machine-readable JSON (one document per line) instead of text.
  bool json = false;
  // Per-RPC deadline in seconds; 0 = defaults (30 s for unary RPCs, none for
  // streams that follow a job to its end).
  double timeout_seconds = 0;
  // Credentials (docs/security.md). Files: --token-file (UNLEARN_TOKEN_FILE), --tls-ca
  // (UNLEARN_TLS_CA), --tls-cert / --tls-key (UNLEARN_TLS_CERT / UNLEARN_TLS_KEY).
  std::string token_file;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // Their contents (LoadCredentials). A token is sent as `authorization: Bearer <token>`; a CA
  // switches the channel to TLS.
  std::string token;
  std::string tls_ca_pem;
  std::string tls_cert_pem;
  std::string tls_key_pem;
};

// Owns the channel and stubs. Not thread-safe to configure; stubs themselves
// are thread-safe.
class Connection {
 public:
  explicit Connection(const GlobalOptions& options);

  const GlobalOptions& options() const { return options_; }
  v1::ModelService::Stub& models() { return *models_; }
  v1::ErasureService::Stub& erasure() { return *erasure_; }
  v1::InferenceService::Stub& inference() { return *inference_; }
  grpc::Channel& channel() { return *channel_; }

  // Adds the bearer token (if any) to a call. PrepareUnary and PrepareStream call it.
  void Authorize(grpc::ClientContext& context) const;
  // Sets the deadline of a unary RPC (--timeout, default 30 s).
  void PrepareUnary(grpc::ClientContext& context) const;
  // Sets the deadline of a stream: --timeout when given, otherwise none.
  void PrepareStream(grpc::ClientContext& context) const;

  // Prints "unlearnctl: CODE: message" to stderr (with a hint when the server
  // is unreachable) and returns kExitRpc.
  int ReportRpcError(const grpc::Status& status) const;

 private:
  GlobalOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
  std::unique_ptr<v1::InferenceService::Stub> inference_;
};

// A server-streaming call whose messages the client parses itself. The generated reader, on a
// message that does not parse (a proto3 string that is not UTF-8, from a faulty server), stops
// reading but leaves the call open, so Finish() waits as long as the server keeps sending (for
// ever once flow control stops it). This reader cancels the call at once and Finish() reports
// INTERNAL naming the message type.
template <typename Response>
class ParsingStreamReader {
 public:
  // `method` is the full path, e.g. "/unlearning.v1.InferenceService/Generate".
  template <typename Request>
  ParsingStreamReader(grpc::Channel& channel, const char* method, grpc::ClientContext* context,
                      const Request& request)
      : context_(context),
        method_(method, grpc::internal::RpcMethod::SERVER_STREAMING, channel.shared_from_this()),
        reader_(grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(&channel, method_,
                                                                              context, request)) {}

  // The next message; false at the end of the stream or on a message that does not parse.
  bool Read(Response* message) {
    if (unparsable_) return false;
    grpc::ByteBuffer buffer;
    if (!reader_->Read(&buffer)) return false;
    ++read_;
    if (grpc::SerializationTraits<Response>::Deserialize(&buffer, message).ok()) return true;
    unparsable_ = true;
    context_->TryCancel();
    return false;
  }

  grpc::Status Finish() {
    grpc::Status status = reader_->Finish();
    if (!unparsable_) return status;
    return grpc::Status(
        grpc::StatusCode::INTERNAL,
        "message " + std::to_string(read_) + " of the stream could not be parsed as " +
            Response::descriptor()->full_name() +
            " (a string that is not UTF-8, or a server built from other .proto files); the call "
            "was cancelled");
  }

 private:
  grpc::ClientContext* context_;
  grpc::internal::RpcMethod method_;
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader_;
  int64_t read_ = 0;  // messages read, the unparsable one included
  bool unparsable_ = false;
};

// "NOT_FOUND", "UNAVAILABLE", ... for a gRPC status code.
std::string StatusCodeName(grpc::StatusCode code);

// Prints "unlearnctl: <message>" to stderr and returns `exit_code`.
int Fail(int exit_code, const std::string& message);

}  // namespace unlearning::client
