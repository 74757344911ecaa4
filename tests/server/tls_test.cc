// TLS and mTLS on the gRPC and metrics ports (docs/security.md), with certificates made at test
// time by the openssl CLI: a TLS client with the CA and a token gets through, a plaintext client
// does not; with a client CA, a client without a certificate is refused at the handshake and one
// with a certificate signed by the CA gets through (its CN is in the audit log); /metrics answers
// over HTTPS only (checked with curl).
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "server/auth.h"
#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/toy_family.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int Shell(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new server::testing::TempDir();
    const std::string d = tmp_->path();
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::ofstream(d + "/san.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    certs_ok_ =
        Shell(absl::StrCat("cd ", d, " && openssl req -x509 ", ec,
                           " -keyout ca.key -out ca.pem -days 1 -subj /CN=unl-test-ca")) == 0 &&
        Shell(absl::StrCat("cd ", d, " && openssl req ", ec,
                           " -keyout server.key -out server.csr -subj /CN=localhost")) == 0 &&
        Shell(absl::StrCat("cd ", d,
                           " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
                           "-CAcreateserial -out server.pem -days 1 -extfile san.ext")) == 0 &&
        Shell(absl::StrCat("cd ", d, " && openssl req ", ec,
                           " -keyout client.key -out client.csr -subj /CN=unl-test-client")) == 0 &&
        Shell(absl::StrCat("cd ", d,
                           " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
                           "-CAcreateserial -out client.pem -days 1")) == 0;
    have_curl_ = Shell("curl --version") == 0;
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(certs_ok_) << "openssl could not make the test certificates (tools/setup.sh "
                              "installs the openssl package)";
    unlearning::testing::WriteToyModel(run_.Join("toy"), 1.0);
    std::ofstream(run_.Join("tokens.jsonl"))
        << TokenFileLine("root", "tok-admin", {"admin"}, {}) << "\n";
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
  }

  std::string File(const std::string& name) const { return tmp_->path() + "/" + name; }

  void StartServer(bool mtls) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "127.0.0.1:0";
    options.data_dir = run_.Join("data");
    options.models = {{"toy", run_.Join("toy")}};
    options.methods = &registries_.methods;
    options.families = &registries_.families;
    options.auth.token_file = run_.Join("tokens.jsonl");
    options.auth.audit_log = run_.Join("audit.jsonl");
    options.tls_cert = File("server.pem");
    options.tls_key = File("server.key");
    if (mtls) options.tls_client_ca = File("ca.pem");
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // ListModels over a channel with `credentials`, as the admin.
  grpc::Status ListModels(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    auto channel = grpc::CreateChannel(server_->grpc_address(), credentials);
    auto stub = v1::ModelService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer tok-admin");
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListModelsResponse r;
    return stub->ListModels(&ctx, v1::ListModelsRequest(), &r);
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(bool client_cert) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadAll(File("ca.pem"));
    if (client_cert) {
      ssl.pem_cert_chain = ReadAll(File("client.pem"));
      ssl.pem_private_key = ReadAll(File("client.key"));
    }
    return grpc::SslCredentials(ssl);
  }

  // curl's exit code fetching /metrics with the admin token (0 = got it).
  int Curl(const std::string& scheme, bool client_cert) {
    std::string cmd = absl::StrCat(
        "curl -sf --max-time 5 -H 'Authorization: Bearer tok-admin' "
        "--cacert ",
        File("ca.pem"));
    if (client_cert) {
      cmd += absl::StrCat(" --cert ", File("client.pem"), " --key ", File("client.key"));
    }
    return Shell(absl::StrCat(cmd, " ", scheme, "://", server_->metrics_address(), "/metrics"));
  }

  static server::testing::TempDir* tmp_;
  static bool certs_ok_;
  static bool have_curl_;
  server::testing::TempDir run_;
  unlearning::testing::ToyRegistries registries_;
  std::unique_ptr<UnlearningServer> server_;
};

server::testing::TempDir* TlsTest::tmp_ = nullptr;
bool TlsTest::certs_ok_ = false;
bool TlsTest::have_curl_ = false;

TEST_F(TlsTest, TlsClientsGetThroughAndPlaintextClientsDoNot) {
  StartServer(/*mtls=*/false);
  EXPECT_TRUE(ListModels(Tls(false)).ok());
  EXPECT_EQ(ListModels(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  if (!have_curl_) GTEST_SKIP() << "no curl: /metrics over HTTPS not checked";
  EXPECT_EQ(Curl("https", false), 0);
  EXPECT_NE(Curl("http", false), 0);
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutACertificate) {
  StartServer(/*mtls=*/true);
  EXPECT_EQ(ListModels(Tls(false)).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(ListModels(Tls(true)).ok());
  server_->Shutdown(absl::Seconds(1));
  EXPECT_THAT(ReadAll(run_.Join("audit.jsonl")), HasSubstr("cn=unl-test-client"));
  server_.reset();
  if (!have_curl_) GTEST_SKIP() << "no curl: /metrics mTLS not checked";
  StartServer(/*mtls=*/true);
  EXPECT_NE(Curl("https", false), 0);
  EXPECT_EQ(Curl("https", true), 0);
}

}  // namespace
}  // namespace unlearning::server
