// One malformed message on the erase stream is rejected alone: ParseOrNameInvalidUtf8 names the
// fields that are not UTF-8, and a raw client (which can send any bytes) sees its own REJECTED
// while the requests before and after it on the same stream run to completion.
#include "server/wire_parse.h"

#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>
#include <gtest/gtest.h>

#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/toy_family.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// Serializes `request`, then overwrites every occurrence of the 4-byte marker "@@@@" with bytes
// that are not UTF-8 (a lone continuation byte, a truncated 3-byte sequence, an invalid lead).
std::string WithInvalidUtf8(const google::protobuf::Message& request) {
  std::string bytes = request.SerializeAsString();
  for (size_t at = bytes.find("@@@@"); at != std::string::npos; at = bytes.find("@@@@", at)) {
    bytes.replace(at, 4, "\x94\xe4\xb8\xf9");
  }
  return bytes;
}

v1::ErasureStreamRequest TextSubmit() {
  v1::ErasureStreamRequest m;
  v1::ErasureRequest* r = m.mutable_submit();
  r->set_request_id("req-1");
  r->set_model_id("lm");
  for (int i = 0; i < 3; ++i) {
    v1::TextExample* e = r->mutable_text()->add_forget_set();
    e->set_question("Who wrote it?");
    e->set_answer(i == 2 ? "An author @@@@" : "An author");
  }
  r->mutable_text()->add_template_answers("I don't know @@@@");
  return m;
}

TEST(ParseOrNameInvalidUtf8, ValidMessageParsesAsItIs) {
  v1::ErasureStreamRequest sent = TextSubmit();
  sent.mutable_submit()->mutable_text()->mutable_forget_set(2)->set_answer(
      "Ünïcödé 作者 🙂");
  sent.mutable_submit()->mutable_text()->set_template_answers(0, "no");
  v1::ErasureStreamRequest got;
  auto invalid = ParseOrNameInvalidUtf8(sent.SerializeAsString(), &got);
  ASSERT_TRUE(invalid.ok()) << invalid.status();
  EXPECT_TRUE(invalid->empty());
  EXPECT_EQ(got.SerializeAsString(), sent.SerializeAsString());
}

TEST(ParseOrNameInvalidUtf8, NamesEveryInvalidStringWithItsIndexAndKeepsTheRest) {
  v1::ErasureStreamRequest got;
  auto invalid = ParseOrNameInvalidUtf8(WithInvalidUtf8(TextSubmit()), &got);
  ASSERT_TRUE(invalid.ok()) << invalid.status();
  EXPECT_THAT(*invalid,
              ElementsAre("submit.text.forget_set[2].answer", "submit.text.template_answers[0]"));
  EXPECT_EQ(got.submit().request_id(), "req-1");
  EXPECT_EQ(got.submit().model_id(), "lm");
  ASSERT_EQ(got.submit().text().forget_set_size(), 3);
  EXPECT_EQ(got.submit().text().forget_set(1).answer(), "An author");
  EXPECT_EQ(got.submit().text().forget_set(2).question(), "Who wrote it?");
  EXPECT_EQ(got.submit().text().forget_set(2).answer(), "");  // cleared
  EXPECT_EQ(got.submit().text().template_answers_size(), 0);
}

TEST(ParseOrNameInvalidUtf8, AnInvalidRequestIdIsNamedToo) {
  v1::ErasureStreamRequest m;
  m.mutable_submit()->set_request_id("id-@@@@");
  m.mutable_submit()->set_model_id("lm");
  v1::ErasureStreamRequest got;
  auto invalid = ParseOrNameInvalidUtf8(WithInvalidUtf8(m), &got);
  ASSERT_TRUE(invalid.ok()) << invalid.status();
  EXPECT_THAT(*invalid, ElementsAre("submit.request_id"));
  EXPECT_EQ(got.submit().request_id(), "");
  EXPECT_EQ(got.submit().model_id(), "lm");
}

TEST(ParseOrNameInvalidUtf8, BytesThatAreNotAMessageAreInvalidArgument) {
  v1::ErasureStreamRequest got;
  // Field 1, length-delimited, length 100 with 3 bytes following; then a truncated varint.
  for (const std::string& bad : {std::string("\x0a\x64xyz", 5), std::string("\x08\xff\xff", 3),
                                 std::string("\xff\xff\xff\xff", 4)}) {
    EXPECT_THAT(ParseOrNameInvalidUtf8(bad, &got),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("not a serialized unlearning.v1.ErasureStreamRequest")));
  }
}

// A client that writes raw bytes on the Erase method, as a buggy or hostile client could.
class RawEraseStream {
 public:
  explicit RawEraseStream(const std::shared_ptr<grpc::Channel>& channel)
      : method_("/unlearning.v1.ErasureService/Erase", grpc::internal::RpcMethod::BIDI_STREAMING,
                channel),
        stream_(
            grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
                channel.get(), method_, &ctx_)) {}

  bool Write(const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    return stream_->Write(buffer);
  }
  bool Write(const v1::ErasureStreamRequest& m) { return Write(m.SerializeAsString()); }
  bool Read(v1::ErasureEvent* event) {
    grpc::ByteBuffer buffer;
    if (!stream_->Read(&buffer)) return false;
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(buffer.Dump(&slices).ok());
    std::string bytes;
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return event->ParseFromString(bytes);
  }
  void WritesDone() { stream_->WritesDone(); }
  grpc::Status Finish() { return stream_->Finish(); }

 private:
  grpc::ClientContext ctx_;
  grpc::internal::RpcMethod method_;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream_;
};

TEST(EraseStreamMalformedMessages, EachIsRejectedAloneAndTheStreamGoesOn) {
  server::testing::TempDir tmp;
  unlearning::testing::ToyRegistries registries;
  const std::string model_dir = tmp.Join("toy-src");
  unlearning::testing::WriteToyModel(model_dir, 1.0);
  ServerOptions options;
  options.auth.insecure = true;
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "";
  options.data_dir = tmp.Join("data");
  options.models = {{"toy", model_dir}};
  options.methods = &registries.methods;
  options.families = &registries.families;
  auto server = UnlearningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->grpc_address(), grpc::InsecureChannelCredentials());

  auto toy = [](const std::string& id) {
    v1::ErasureStreamRequest m;
    v1::ErasureRequest* r = m.mutable_submit();
    r->set_request_id(id);
    r->set_model_id("toy");
    r->mutable_method()->mutable_named()->set_name("toy_scale");
    r->mutable_classes()->add_forget_classes(3);
    return m;
  };
  v1::ErasureStreamRequest bad_text = TextSubmit();
  bad_text.mutable_submit()->set_request_id("bad-text");
  bad_text.mutable_submit()->set_model_id("toy");
  v1::ErasureStreamRequest bad_watch;
  bad_watch.set_watch_job_id("job-@@@@");

  RawEraseStream stream(channel);
  ASSERT_TRUE(stream.Write(toy("before")));
  ASSERT_TRUE(stream.Write(WithInvalidUtf8(bad_text)));
  ASSERT_TRUE(stream.Write(WithInvalidUtf8(bad_watch)));
  ASSERT_TRUE(stream.Write(std::string("\x0a\x64xyz", 5)));  // not wire format
  ASSERT_TRUE(stream.Write(toy("after")));
  stream.WritesDone();
  std::vector<v1::ErasureEvent> rejected;
  std::vector<std::string> completed;
  v1::ErasureEvent event;
  while (stream.Read(&event)) {
    if (event.kind() == v1::ErasureEvent::KIND_REJECTED) rejected.push_back(event);
    if (event.kind() == v1::ErasureEvent::KIND_COMPLETED) completed.push_back(event.request_id());
  }
  const grpc::Status status = stream.Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();

  ASSERT_EQ(rejected.size(), 3u);
  EXPECT_EQ(rejected[0].request_id(), "bad-text");
  EXPECT_EQ(rejected[0].status_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(rejected[0].message(),
              HasSubstr("submit.text.forget_set[2].answer, submit.text.template_answers[0] are "
                        "not valid UTF-8"));
  EXPECT_EQ(rejected[1].status_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(rejected[1].message(), HasSubstr("watch_job_id is not valid UTF-8"));
  EXPECT_EQ(rejected[2].status_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(rejected[2].message(), HasSubstr("not a serialized"));
  // The requests on either side of the malformed ones ran; nothing was journaled for the others.
  EXPECT_THAT(completed, ElementsAre("before", "after"));
  auto erasure = v1::ErasureService::NewStub(channel);
  grpc::ClientContext ctx;
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(erasure->ListJobs(&ctx, v1::ListJobsRequest(), &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 2);
  (*server)->Shutdown(absl::Seconds(5));
}

}  // namespace
}  // namespace unlearning::server
