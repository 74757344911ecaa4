// TLS and mTLS on the gRPC and metrics ports (docs/security.md), with certificates made at test
// time by the openssl CLI: a TLS client with the CA and a token gets through, a plaintext client
// does not; with a client CA, a client without a certificate is refused at the handshake and one
// with a certificate signed by the CA gets through (its CN is in the audit log); /metrics answers
// over HTTPS only (checked with curl).
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
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
    std::ofstream(d + "/san.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    const std::string run = absl::StrCat("cd ", d, " && openssl ");
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    // A self-signed CA <name>.pem / .key.
    auto ca = [&](const std::string& name) {
      return Shell(absl::StrCat(run, "req -x509 ", ec, " -keyout ", name, ".key -out ", name,
                                ".pem -days 1 -subj /CN=unl-test-", name)) == 0;
    };
    // <name>.pem / .key with subject CN=`cn`, signed by CA `by` (`ext`: extensions file or "").
    auto cert = [&](const std::string& name, const std::string& cn, const std::string& by,
                    const std::string& ext) {
      return Shell(absl::StrCat(run, "req ", ec, " -keyout ", name, ".key -out ", name,
                                ".csr -subj /CN=", cn)) == 0 &&
             Shell(absl::StrCat(run, "x509 -req -in ", name, ".csr -CA ", by, ".pem -CAkey ", by,
                                ".key -CAcreateserial -out ", name, ".pem -days 1",
                                ext.empty() ? "" : " -extfile " + ext)) == 0;
    };
    certs_ok_ = ca("ca") && cert("server", "localhost", "ca", "san.ext") &&
                cert("client", "unl-test-client", "ca", "") &&
                // A second CA and a server certificate of its own: what a rotation brings.
                ca("ca2") && cert("server2", "localhost", "ca2", "san.ext");
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

  // `cert_dir`: where server.pem and server.key are read from ("" = the suite's originals).
  void StartServer(bool mtls, int reload_seconds = 10, const std::string& cert_dir = "") {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "127.0.0.1:0";
    options.data_dir = run_.Join("data");
    options.models = {{"toy", run_.Join("toy")}};
    options.methods = &registries_.methods;
    options.families = &registries_.families;
    options.auth.token_file = run_.Join("tokens.jsonl");
    options.auth.audit_log = run_.Join("audit.jsonl");
    options.tls_cert = cert_dir.empty() ? File("server.pem") : cert_dir + "/server.pem";
    options.tls_key = cert_dir.empty() ? File("server.key") : cert_dir + "/server.key";
    if (mtls) options.tls_client_ca = File("ca.pem");
    options.tls_reload_seconds = reload_seconds;
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // ListModels over a new channel with `credentials`, as the admin.
  grpc::Status ListModels(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    return ListModels(grpc::CreateChannel(server_->grpc_address(), credentials));
  }
  grpc::Status ListModels(const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = v1::ModelService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer tok-admin");
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListModelsResponse r;
    return stub->ListModels(&ctx, v1::ListModelsRequest(), &r);
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(bool client_cert,
                                                const std::string& ca = "ca.pem") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadAll(File(ca));
    if (client_cert) {
      ssl.pem_cert_chain = ReadAll(File("client.pem"));
      ssl.pem_private_key = ReadAll(File("client.key"));
    }
    return grpc::SslCredentials(ssl);
  }

  // curl's exit code fetching /metrics with the admin token (0 = got it), trusting `ca`.
  int Curl(const std::string& scheme, bool client_cert, const std::string& ca = "ca.pem") {
    std::string cmd = absl::StrCat(
        "curl -sf --max-time 5 -H 'Authorization: Bearer tok-admin' "
        "--cacert ",
        File(ca));
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

// Copies `from` over `to` as a rotation tool does: a new file renamed into place.
void Replace(const std::string& from, const std::string& to) {
  ASSERT_EQ(Shell(absl::StrCat("cp ", from, " ", to, ".new && mv ", to, ".new ", to)), 0);
}

// Polls `ok` every 200 ms for up to `seconds`; true once it holds.
bool Within(double seconds, const std::function<bool()>& ok) {
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  while (absl::Now() < end) {
    if (ok()) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return ok();
}

// A certificate rotated on disk is served without a restart: with --tls-reload-seconds 1, new
// gRPC connections and /metrics present the certificate of the second CA within a few seconds,
// and a connection opened before keeps working. Half-way (the new certificate beside the old
// key) /metrics keeps the old pair.
TEST_F(TlsTest, ARotatedCertificateIsServedWithoutARestart) {
  const std::string dir = run_.Join("certs");
  ASSERT_EQ(Shell(absl::StrCat("mkdir -p ", dir, " && cp ", File("server.pem"), " ",
                               File("server.key"), " ", dir, "/")),
            0);
  StartServer(/*mtls=*/false, /*reload_seconds=*/1, dir);
  auto open_channel = grpc::CreateChannel(server_->grpc_address(), Tls(false));
  ASSERT_TRUE(ListModels(open_channel).ok());
  EXPECT_TRUE(ListModels(Tls(false)).ok());
  EXPECT_FALSE(ListModels(Tls(false, "ca2.pem")).ok());

  // Half-way: the new certificate, the old key.
  Replace(File("server2.pem"), dir + "/server.pem");
  absl::SleepFor(absl::Seconds(3));
  if (have_curl_) {
    EXPECT_EQ(Curl("https", false), 0) << "/metrics must keep the old pair";
    EXPECT_NE(Curl("https", false, "ca2.pem"), 0);
  }
  MetricsTls mismatched;
  mismatched.cert_file = dir + "/server.pem";
  mismatched.key_file = dir + "/server.key";
  const absl::Status refused = server_->metrics().ReloadTls(mismatched);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("does not match"));
  std::cerr << "half-way rotation: gRPC with the old CA "
            << (ListModels(Tls(false)).ok() ? "ok" : "refused") << ", with the new CA "
            << (ListModels(Tls(false, "ca2.pem")).ok() ? "ok" : "refused") << "\n";

  Replace(File("server2.key"), dir + "/server.key");
  EXPECT_TRUE(Within(10, [&] { return ListModels(Tls(false, "ca2.pem")).ok(); }))
      << "new gRPC connections never got the rotated certificate";
  EXPECT_FALSE(ListModels(Tls(false)).ok()) << "a new connection still got the old certificate";
  EXPECT_TRUE(ListModels(open_channel).ok()) << "the connection opened before was dropped";
  if (!have_curl_) GTEST_SKIP() << "no curl: /metrics rotation not checked";
  EXPECT_TRUE(Within(10, [&] { return Curl("https", false, "ca2.pem") == 0; }))
      << "/metrics never served the rotated certificate";
  EXPECT_NE(Curl("https", false), 0);
}

TEST_F(TlsTest, ANegativeReloadPeriodIsRefused) {
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = run_.Join("data");
  options.methods = &registries_.methods;
  options.families = &registries_.families;
  options.auth.insecure = true;
  options.tls_cert = File("server.pem");
  options.tls_key = File("server.key");
  options.tls_reload_seconds = -1;
  auto server = UnlearningServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("--tls-reload-seconds"));
}

}  // namespace
}  // namespace unlearning::server
