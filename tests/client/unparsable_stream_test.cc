// A server that sends a message the client cannot parse (a proto3 string that is not UTF-8, as a
// degenerate model streamed through an older server did) makes `unlearnctl generate` exit with an
// RPC error that says so, promptly, instead of hanging: the stream goes on after the bad message
// with far more data than gRPC's flow-control window, so a client that stopped reading without
// cancelling the call would wait forever in Finish().
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "client/commands.h"
#include "client/connection.h"
#include "client/exit_codes.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::client {
namespace {

using ::testing::HasSubstr;

constexpr int kChunksAfterTheBadOne = 4000;  // x 1 KiB: well past the 64 KiB window

// Generate answers with a good chunk, a chunk whose text is not UTF-8, then many good chunks.
class BadChunkService
    : public v1::InferenceService::WithRawCallbackMethod_Generate<v1::InferenceService::Service> {
 public:
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext*,
                                                       const grpc::ByteBuffer*) override {
    return new Writer();
  }

 private:
  class Writer : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
   public:
    Writer() { Next(); }
    void OnWriteDone(bool ok) override {
      if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      Next();
    }
    void OnDone() override { delete this; }

   private:
    void Next() {
      if (sent_ == kChunksAfterTheBadOne + 2) return Finish(grpc::Status::OK);
      v1::GenerateResponse chunk;
      chunk.set_text(sent_ == 0 ? "Hello" : std::string(1024, 'x'));
      std::string bytes = chunk.SerializeAsString();
      if (sent_ == 1) {
        const size_t at = bytes.find(std::string(4, 'x'));
        bytes.replace(at, 4, "\x94\xb6\xf9\xff");  // lone bytes, as the report saw
      }
      ++sent_;
      grpc::Slice slice(bytes);
      buffer_ = grpc::ByteBuffer(&slice, 1);
      StartWrite(&buffer_);
    }
    int sent_ = 0;
    grpc::ByteBuffer buffer_;
  };
};

TEST(UnparsableStream, GenerateExitsWithAClearRpcErrorInsteadOfHanging) {
  BadChunkService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);

  GlobalOptions global;
  global.server = "127.0.0.1:" + std::to_string(port);
  Connection connection(global);
  GenerateOptions options;
  options.model = "m";
  options.prompt = "p";
  testing::internal::CaptureStderr();
  testing::internal::CaptureStdout();
  auto run = std::async(std::launch::async, [&] { return Generate(connection, options); });
  const bool ended = run.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));  // unblocks a hang
  const int code = run.get();
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(ended) << "Generate still waiting 30 s after the unparsable message";
  EXPECT_EQ(code, kExitRpc);
  EXPECT_THAT(out, HasSubstr("Hello"));
  EXPECT_THAT(err, HasSubstr("could not be parsed"));
}

}  // namespace
}  // namespace unlearning::client
