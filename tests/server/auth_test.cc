// Authentication and authorization over real gRPC on loopback (docs/security.md): every RPC of
// proto/ x {no token, unknown token, query, erase (owner), erase (another identity), admin, a token
// restricted to another model} gives the exact status, and a refusal changes nothing (jobs,
// certificates, model versions); job ownership; token reload (a bad file keeps the old table);
// the audit log (entries present, no token, no forget data, no prompts); --insecure is explicit.
#include "server/auth.h"

#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/common/sha256.h"
#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/toy_family.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

using ::testing::HasSubstr;

constexpr char kForgetSecret[] = "Zanzibar-forget-answer-7731";
constexpr char kPromptSecret[] = "Quixotic-prompt-text-4412";

// name -> (token, token-file line fields)
struct TestToken {
  std::string name;
  std::string token;
  std::vector<std::string> roles;
  std::vector<std::string> models;
};

const std::vector<TestToken>& Tokens() {
  static const auto* tokens = new std::vector<TestToken>{
      {"reader", "tok-query-1", {"query"}, {}},
      {"eraser", "tok-erase-1", {"erase"}, {}},
      {"eraser2", "tok-erase-2", {"erase"}, {}},
      {"root", "tok-admin-1", {"admin"}, {}},
      // Every role, but only on model "other".
      {"elsewhere", "tok-other-1", {"query", "erase", "admin"}, {"other"}},
  };
  return *tokens;
}

std::string TokenFileText(const std::vector<TestToken>& tokens) {
  std::string text = "# test tokens\n\n";
  for (const TestToken& t : tokens) {
    text += TokenFileLine(t.name, t.token, t.roles, t.models) + "\n";
  }
  return text;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    toy_dir_ = tmp_.Join("toy-src");
    other_dir_ = tmp_.Join("other-src");
    unlearning::testing::WriteToyModel(toy_dir_, 1.0);
    unlearning::testing::WriteToyModel(other_dir_, 2.0);
    token_file_ = tmp_.Join("tokens.jsonl");
    audit_file_ = tmp_.Join("audit.jsonl");
    WriteFile(token_file_, TokenFileText(Tokens()));
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "";
    options.data_dir = tmp_.Join("data");
    options.models = {{"toy", toy_dir_}, {"other", other_dir_}};
    options.methods = &registries_.methods;
    options.families = &registries_.families;
    options.purge_grace_seconds = -1;
    options.auth.token_file = token_file_;
    options.auth.audit_log = audit_file_;
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    models_ = v1::ModelService::NewStub(channel);
    erasure_ = v1::ErasureService::NewStub(channel);
    inference_ = v1::InferenceService::NewStub(channel);
    // A completed job of "eraser" on toy: the target of the job RPCs.
    v1::ErasureEvent done = Erase("tok-erase-1", ToyRequest("req-owned", 0.5)).back();
    ASSERT_EQ(done.kind(), v1::ErasureEvent::KIND_COMPLETED) << done.DebugString();
    job_id_ = done.job_id();
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
  }

  static void Authorize(grpc::ClientContext& ctx, const std::string& token) {
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  }

  // DescribeModel("toy") with `token`.
  grpc::Status DescribeToy(const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::DescribeModelRequest q;
    q.set_model_id("toy");
    v1::ModelInfo r;
    return models_->DescribeModel(&ctx, q, &r);
  }

  // Submits request `id` on an open Erase stream, closes it, and returns the first answer; the
  // stream must then end OK.
  template <typename Stream>
  static v1::ErasureEvent SubmitAndClose(Stream& stream, const std::string& id) {
    v1::ErasureStreamRequest m;
    *m.mutable_submit() = ToyRequest(id, 0.5);
    EXPECT_TRUE(stream->Write(m));
    stream->WritesDone();
    v1::ErasureEvent first, e;
    EXPECT_TRUE(stream->Read(&first));
    while (stream->Read(&e)) {
    }
    EXPECT_TRUE(stream->Finish().ok());
    return first;
  }

  static v1::ErasureRequest ToyRequest(const std::string& id, double factor,
                                       const std::string& model = "toy") {
    v1::ErasureRequest r;
    r.set_request_id(id);
    r.set_model_id(model);
    r.mutable_method()->mutable_named()->set_name("toy_scale");
    r.mutable_method()->mutable_named()->set_params_json(
        absl::StrCat("{\"factor\": ", factor, "}"));
    r.mutable_classes()->add_forget_classes(3);
    return r;
  }

  // Opens an Erase stream, sends `messages`, half-closes and returns every event, plus a last
  // pseudo-event carrying the stream's final status code in status_code when it is not OK.
  std::vector<v1::ErasureEvent> Stream(const std::string& token,
                                       const std::vector<v1::ErasureStreamRequest>& messages,
                                       grpc::Status* final_status = nullptr) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto stream = erasure_->Erase(&ctx);
    for (const auto& m : messages) {
      if (!stream->Write(m)) break;
    }
    stream->WritesDone();
    std::vector<v1::ErasureEvent> events;
    v1::ErasureEvent e;
    while (stream->Read(&e)) events.push_back(e);
    grpc::Status status = stream->Finish();
    if (final_status != nullptr) *final_status = status;
    return events;
  }
  std::vector<v1::ErasureEvent> Erase(const std::string& token, const v1::ErasureRequest& r) {
    v1::ErasureStreamRequest m;
    *m.mutable_submit() = r;
    return Stream(token, {m});
  }

  // The outcome of an Erase stream as one code: the stream's status if it failed, else the first
  // event's (REJECTED: its code; otherwise OK).
  grpc::StatusCode EraseCode(const std::string& token, const v1::ErasureStreamRequest& m) {
    grpc::Status status;
    std::vector<v1::ErasureEvent> events = Stream(token, {m}, &status);
    if (!status.ok()) return status.error_code();
    if (events.empty()) return grpc::StatusCode::UNKNOWN;
    if (events[0].kind() == v1::ErasureEvent::KIND_REJECTED) {
      return static_cast<grpc::StatusCode>(events[0].status_code());
    }
    return grpc::StatusCode::OK;
  }

  // What a refusal must not change: the jobs (ids, states, owners), the certificates, the models'
  // versions.
  std::string Snapshot() {
    std::string out;
    grpc::ClientContext c1;
    Authorize(c1, "tok-admin-1");
    v1::ListJobsRequest lj;
    lj.set_page_size(1000);
    v1::ListJobsResponse jobs;
    EXPECT_TRUE(erasure_->ListJobs(&c1, lj, &jobs).ok());
    for (const v1::Job& j : jobs.jobs()) {
      out += j.SerializeAsString();  // id, state, progress, times, version
    }
    for (const char* model : {"toy", "other"}) {
      grpc::ClientContext c2;
      Authorize(c2, "tok-admin-1");
      v1::DescribeModelRequest dm;
      dm.set_model_id(model);
      v1::ModelInfo info;
      EXPECT_TRUE(models_->DescribeModel(&c2, dm, &info).ok());
      out += info.SerializeAsString();
      grpc::ClientContext c3;
      Authorize(c3, "tok-admin-1");
      v1::ListCertificatesRequest lc;
      lc.set_model_id(model);
      v1::ListCertificatesResponse certs;
      EXPECT_TRUE(erasure_->ListCertificates(&c3, lc, &certs).ok());
      out += absl::StrCat(model, " certificates:", certs.certificates_size(), ";");
    }
    return out;
  }

  // Every RPC, called with `token` on model "toy" / the owned job; returns the status code. The
  // arguments are chosen so that an allowed call changes nothing either (a loaded id, a missing
  // version, a finished job, an invalid request).
  std::map<std::string, std::function<grpc::StatusCode(const std::string&)>> Rpcs() {
    std::map<std::string, std::function<grpc::StatusCode(const std::string&)>> rpcs;
    rpcs["ModelService/ListModels"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::ListModelsResponse r;
      return models_->ListModels(&ctx, v1::ListModelsRequest(), &r).error_code();
    };
    rpcs["ModelService/DescribeModel"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::DescribeModelRequest q;
      q.set_model_id("toy");
      v1::ModelInfo r;
      return models_->DescribeModel(&ctx, q, &r).error_code();
    };
    rpcs["ModelService/LoadModel"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::LoadModelRequest q;
      q.set_model_id("toy");  // already loaded: refused by the manager when allowed
      q.set_model_dir(toy_dir_);
      v1::ModelInfo r;
      return models_->LoadModel(&ctx, q, &r).error_code();
    };
    rpcs["ModelService/RollbackModel"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::RollbackModelRequest q;
      q.set_model_id("toy");
      q.set_version(99);  // no such version
      q.set_force(true);
      v1::ModelInfo r;
      return models_->RollbackModel(&ctx, q, &r).error_code();
    };
    rpcs["ErasureService/Erase(submit)"] = [this](const std::string& token) {
      v1::ErasureStreamRequest m;
      *m.mutable_submit() = ToyRequest("req-matrix", 0.5);
      m.mutable_submit()->clear_method();  // invalid: never accepted when allowed
      return EraseCode(token, m);
    };
    rpcs["ErasureService/Erase(watch)"] = [this](const std::string& token) {
      v1::ErasureStreamRequest m;
      m.set_watch_job_id(job_id_);
      return EraseCode(token, m);
    };
    rpcs["ErasureService/GetJob"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::GetJobRequest q;
      q.set_job_id(job_id_);
      v1::Job r;
      return erasure_->GetJob(&ctx, q, &r).error_code();
    };
    rpcs["ErasureService/ListJobs"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::ListJobsRequest q;
      q.set_model_id("toy");
      v1::ListJobsResponse r;
      return erasure_->ListJobs(&ctx, q, &r).error_code();
    };
    rpcs["ErasureService/CancelJob"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::CancelJobRequest q;
      q.set_job_id(job_id_);  // completed: FAILED_PRECONDITION when allowed
      v1::Job r;
      return erasure_->CancelJob(&ctx, q, &r).error_code();
    };
    rpcs["ErasureService/GetCertificate"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::GetCertificateRequest q;
      q.set_job_id(job_id_);
      v1::Certificate r;
      return erasure_->GetCertificate(&ctx, q, &r).error_code();
    };
    rpcs["ErasureService/ListCertificates"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::ListCertificatesRequest q;
      q.set_model_id("toy");
      v1::ListCertificatesResponse r;
      return erasure_->ListCertificates(&ctx, q, &r).error_code();
    };
    rpcs["ErasureService/GetSigningKey"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::SigningKey r;
      return erasure_->GetSigningKey(&ctx, v1::GetSigningKeyRequest(), &r).error_code();
    };
    rpcs["InferenceService/Generate"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::GenerateRequest q;
      q.set_model_id("toy");
      q.set_prompt(kPromptSecret);
      auto reader = inference_->Generate(&ctx, q);
      v1::GenerateResponse r;
      while (reader->Read(&r)) {
      }
      return reader->Finish().error_code();
    };
    rpcs["InferenceService/Score"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::ScoreRequest q;
      q.set_model_id("toy");
      q.set_prompt(kPromptSecret);
      q.set_continuation("x");
      v1::ScoreResponse r;
      return inference_->Score(&ctx, q, &r).error_code();
    };
    rpcs["InferenceService/Classify"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::ClassifyRequest q;
      q.set_model_id("toy");
      v1::ClassifyResponse r;
      return inference_->Classify(&ctx, q, &r).error_code();
    };
    rpcs["InferenceService/Sample"] = [this](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(ctx, token);
      v1::SampleRequest q;
      q.set_model_id("toy");
      q.add_labels(1);
      auto reader = inference_->Sample(&ctx, q);
      v1::SampleResponse r;
      while (reader->Read(&r)) {
      }
      return reader->Finish().error_code();
    };
    return rpcs;
  }

  server::testing::TempDir tmp_;
  unlearning::testing::ToyRegistries registries_;
  std::string toy_dir_, other_dir_, token_file_, audit_file_;
  std::string job_id_;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
  std::unique_ptr<v1::InferenceService::Stub> inference_;
};

// Expected outcome of one cell: an exact refusal code, or "allowed" (any code but the two auth
// refusals: the RPC ran and answered for its own reasons).
constexpr int kAllowed = -1;

TEST_F(AuthTest, EveryRpcTimesEveryCallerGivesTheExactStatusAndRefusalsChangeNothing) {
  const int UA = static_cast<int>(grpc::StatusCode::UNAUTHENTICATED);
  const int PD = static_cast<int>(grpc::StatusCode::PERMISSION_DENIED);
  const int OK = kAllowed;
  // Callers: none, unknown token, query, erase (owner of the job), erase (another identity),
  // admin, every role but restricted to model "other".
  const std::vector<std::pair<std::string, std::string>> callers = {{"no token", ""},
                                                                    {"unknown token", "tok-nobody"},
                                                                    {"query", "tok-query-1"},
                                                                    {"erase owner", "tok-erase-1"},
                                                                    {"erase other", "tok-erase-2"},
                                                                    {"admin", "tok-admin-1"},
                                                                    {"other model", "tok-other-1"}};
  // rpc -> expected per caller (same order).
  const std::map<std::string, std::vector<int>> expected = {
      {"ModelService/ListModels", {UA, UA, OK, OK, OK, OK, OK}},
      {"ModelService/DescribeModel", {UA, UA, OK, OK, OK, OK, PD}},
      {"ModelService/LoadModel", {UA, UA, PD, PD, PD, OK, PD}},
      {"ModelService/RollbackModel", {UA, UA, PD, PD, PD, OK, PD}},
      {"ErasureService/Erase(submit)", {UA, UA, PD, OK, OK, OK, PD}},
      {"ErasureService/Erase(watch)", {UA, UA, PD, OK, PD, OK, PD}},
      {"ErasureService/GetJob", {UA, UA, PD, OK, PD, OK, PD}},
      {"ErasureService/ListJobs", {UA, UA, PD, OK, OK, OK, PD}},
      {"ErasureService/CancelJob", {UA, UA, PD, OK, PD, OK, PD}},
      {"ErasureService/GetCertificate", {UA, UA, PD, OK, PD, OK, PD}},
      {"ErasureService/ListCertificates", {UA, UA, PD, OK, OK, OK, PD}},
      {"ErasureService/GetSigningKey", {UA, UA, OK, OK, OK, OK, OK}},
      {"InferenceService/Generate", {UA, UA, OK, PD, PD, OK, PD}},
      {"InferenceService/Score", {UA, UA, OK, PD, PD, OK, PD}},
      {"InferenceService/Classify", {UA, UA, OK, PD, PD, OK, PD}},
      {"InferenceService/Sample", {UA, UA, OK, PD, PD, OK, PD}},
  };
  auto rpcs = Rpcs();
  ASSERT_EQ(rpcs.size(), expected.size());
  int cells = 0, refusals = 0;
  for (const auto& [rpc, want] : expected) {
    ASSERT_EQ(rpcs.count(rpc), 1u) << rpc;
    for (size_t i = 0; i < callers.size(); ++i) {
      const std::string before = Snapshot();
      const grpc::StatusCode got = rpcs[rpc](callers[i].second);
      ++cells;
      const std::string where = absl::StrCat(rpc, " as ", callers[i].first);
      if (want[i] == kAllowed) {
        EXPECT_NE(got, grpc::StatusCode::UNAUTHENTICATED) << where;
        EXPECT_NE(got, grpc::StatusCode::PERMISSION_DENIED) << where;
      } else {
        ++refusals;
        EXPECT_EQ(static_cast<int>(got), want[i]) << where;
      }
      // Refused or allowed-but-invalid: nothing changed either way.
      EXPECT_EQ(Snapshot(), before) << where;
    }
  }
  EXPECT_EQ(cells, 16 * 7);
  EXPECT_EQ(refusals, 71);
}

TEST_F(AuthTest, MessagesSayWhatToFix) {
  grpc::ClientContext c1;
  v1::ListModelsResponse r;
  grpc::Status none = models_->ListModels(&c1, v1::ListModelsRequest(), &r);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(none.error_message(), HasSubstr("--token-file"));
  grpc::ClientContext c2;
  Authorize(c2, "tok-query-1");
  v1::RollbackModelRequest q;
  q.set_model_id("toy");
  v1::ModelInfo info;
  grpc::Status denied = models_->RollbackModel(&c2, q, &info);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), HasSubstr("admin"));
  EXPECT_THAT(denied.error_message(), HasSubstr("'reader'"));
  grpc::ClientContext c3;
  Authorize(c3, "tok-other-1");
  v1::DescribeModelRequest d;
  d.set_model_id("toy");
  grpc::Status model = models_->DescribeModel(&c3, d, &info);
  EXPECT_EQ(model.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(model.error_message(), HasSubstr("may not use model 'toy'"));
}

TEST_F(AuthTest, EraseCallersSeeOnlyTheirOwnJobsAndAModelRestrictedListIsFiltered) {
  // eraser2 submits its own job; each erase identity lists only its own, admin lists both.
  v1::ErasureEvent mine = Erase("tok-erase-2", ToyRequest("req-mine", 0.5)).back();
  ASSERT_EQ(mine.kind(), v1::ErasureEvent::KIND_COMPLETED);
  auto list = [&](const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::ListJobsResponse r;
    EXPECT_TRUE(erasure_->ListJobs(&ctx, v1::ListJobsRequest(), &r).ok());
    std::vector<std::string> ids;
    for (const auto& j : r.jobs()) ids.push_back(j.job_id());
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  EXPECT_THAT(list("tok-erase-1"), ::testing::ElementsAre(job_id_));
  EXPECT_THAT(list("tok-erase-2"), ::testing::ElementsAre(mine.job_id()));
  EXPECT_EQ(list("tok-admin-1").size(), 2u);
  // Re-sending another identity's request id does not follow (or reveal) its job.
  const std::string before = Snapshot();
  std::vector<v1::ErasureEvent> events = Erase("tok-erase-2", ToyRequest("req-owned", 0.5));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].kind(), v1::ErasureEvent::KIND_REJECTED);
  EXPECT_EQ(events[0].status_code(), static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_TRUE(events[0].job_id().empty());
  EXPECT_EQ(Snapshot(), before);
  // The same resend by its owner follows it (idempotent, as before).
  events = Erase("tok-erase-1", ToyRequest("req-owned", 0.5));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].kind(), v1::ErasureEvent::KIND_ACCEPTED);
  EXPECT_TRUE(events[0].duplicate());
  // The token restricted to "other" lists only "other".
  grpc::ClientContext ctx;
  Authorize(ctx, "tok-other-1");
  v1::ListModelsResponse models;
  ASSERT_TRUE(models_->ListModels(&ctx, v1::ListModelsRequest(), &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).model_id(), "other");
}

TEST_F(AuthTest, ReloadAddsAndRevokesTokensAndABadFileKeepsTheOldTable) {
  auto describe = [&](const std::string& token) { return DescribeToy(token).error_code(); };
  EXPECT_EQ(describe("tok-new"), grpc::StatusCode::UNAUTHENTICATED);
  // A new file: "reader" removed, "newcomer" added.
  std::vector<TestToken> tokens = Tokens();
  tokens.erase(tokens.begin());
  tokens.push_back({"newcomer", "tok-new", {"query"}, {}});
  WriteFile(token_file_, TokenFileText(tokens));
  ASSERT_TRUE(server_->ReloadAuth().ok());
  EXPECT_EQ(describe("tok-new"), grpc::StatusCode::OK);
  EXPECT_EQ(describe("tok-query-1"), grpc::StatusCode::UNAUTHENTICATED);
  // A broken file (a plain token where the hash belongs): the reload fails, the table stays.
  WriteFile(token_file_, "{\"name\": \"x\", \"token\": \"tok-x\", \"roles\": [\"admin\"]}\n");
  absl::Status bad = server_->ReloadAuth();
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.message()), HasSubstr("kept the previous tokens"));
  EXPECT_EQ(describe("tok-new"), grpc::StatusCode::OK);
  EXPECT_EQ(describe("tok-x"), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, AnOpenStreamStopsSubmittingOnceItsTokenIsRevoked) {
  grpc::ClientContext ctx;
  Authorize(ctx, "tok-erase-2");
  auto stream = erasure_->Erase(&ctx);
  stream->WaitForInitialMetadata();  // the server has opened (and authorized) the stream
  // Revoke eraser2 while its stream is open.
  std::vector<TestToken> tokens = Tokens();
  tokens.erase(tokens.begin() + 2);
  WriteFile(token_file_, TokenFileText(tokens));
  ASSERT_TRUE(server_->ReloadAuth().ok());
  const std::string before = Snapshot();
  const v1::ErasureEvent e = SubmitAndClose(stream, "req-revoked");
  EXPECT_EQ(e.kind(), v1::ErasureEvent::KIND_REJECTED);
  EXPECT_EQ(e.status_code(), static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(AuthTest, TheAuditLogRecordsWhoDidWhatButNoTokensForgetDataOrPrompts) {
  // A text erasure carrying the secret (refused for the toy, but the server saw it), a refused
  // Generate and an allowed one with the prompt secret, a refusal without a token.
  v1::ErasureRequest text;
  text.set_request_id("req-text");
  text.set_model_id("toy");
  text.mutable_method()->mutable_named()->set_name("npo");
  v1::TextExample* ex = text.mutable_text()->add_forget_set();
  ex->set_question(kForgetSecret);
  ex->set_answer(kForgetSecret);
  Erase("tok-erase-1", text);
  Erase("tok-other-1", text);
  auto rpcs = Rpcs();
  rpcs["InferenceService/Generate"]("tok-query-1");
  rpcs["InferenceService/Generate"]("tok-erase-1");
  rpcs["ModelService/RollbackModel"]("");
  server_->Shutdown(absl::Seconds(5));

  const std::string log = ReadAll(audit_file_);
  absl::StatusOr<int64_t> chained = VerifyAuditLog(audit_file_);  // the server's log is chained
  EXPECT_TRUE(chained.ok()) << chained.status();
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kForgetSecret)));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kPromptSecret)));
  for (const TestToken& t : Tokens()) EXPECT_THAT(log, ::testing::Not(HasSubstr(t.token)));
  std::vector<nlohmann::json> lines;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    for (const char* key : {"time", "caller", "peer", "rpc", "code"}) {
      EXPECT_TRUE(j.contains(key)) << key << " in " << line;
    }
    lines.push_back(j);
  }
  auto has = [&](const std::string& caller, const std::string& rpc, const std::string& code,
                 const std::string& model) {
    return std::any_of(lines.begin(), lines.end(), [&](const nlohmann::json& j) {
      return j["caller"] == caller && j["rpc"] == rpc && j["code"] == code &&
             (model.empty() || j.value("model", "") == model);
    });
  };
  // The set-up's accepted submit, with its job id and request id.
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [&](const nlohmann::json& j) {
    return j["caller"] == "eraser" && j["rpc"] == "ErasureService/Erase.submit" &&
           j["code"] == "OK" && j.value("job_id", "") == job_id_ &&
           j.value("request_id", "") == "req-owned";
  }));
  // The text request (refused for the toy family, for its own reason): logged by id and code only.
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [&](const nlohmann::json& j) {
    return j["caller"] == "eraser" && j["rpc"] == "ErasureService/Erase.submit" &&
           j.value("request_id", "") == "req-text" && j["code"] != "OK" &&
           j["code"] != "PERMISSION_DENIED" && !j.contains("reason");
  }));
  EXPECT_TRUE(has("elsewhere", "ErasureService/Erase.submit", "PERMISSION_DENIED", "toy"));
  EXPECT_TRUE(has("eraser", "InferenceService/Generate", "PERMISSION_DENIED", "toy"));
  EXPECT_TRUE(has("-", "ModelService/RollbackModel(force)", "UNAUTHENTICATED", "toy"));
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [&](const nlohmann::json& j) {
    return j["caller"] == "reader" && j["rpc"] == "InferenceService/Generate" &&
           j["code"] != "PERMISSION_DENIED" &&
           j["peer"].get<std::string>().find("127.0.0.1") != std::string::npos;
  }));
}

// The audit log is hash-chained (server/auth.h): the chain holds across a restart (a new
// Authorizer on the same file) and a SIGHUP reopen; editing a field, deleting a line and swapping
// two lines are each found at the right line, by VerifyAuditLog and by the independent
// tools/verify_audit_log.py (Python standard library).
TEST(AuditLogTest, LinesAreHashChainedAcrossRestartsAndTamperingIsFound) {
  server::testing::TempDir tmp;
  const std::string path = tmp.Join("audit.jsonl");
  AuthOptions options;
  options.insecure = true;
  options.audit_log = path;
  auto write = [&](Authorizer& auth, int first, int n) {
    for (int i = first; i < first + n; ++i) {
      AuditEntry e;
      e.caller = "reader";
      e.peer = "ipv4:127.0.0.1:1";
      e.rpc = "InferenceService/Score";
      e.model_id = "toy";
      e.request_id = absl::StrCat("r", i);
      auth.Audit(e);
    }
  };
  {
    auto auth = Authorizer::Create(options);
    ASSERT_TRUE(auth.ok()) << auth.status();
    write(**auth, 0, 5);
  }
  {
    auto auth = Authorizer::Create(options);  // a restart: the chain continues from the file
    ASSERT_TRUE(auth.ok()) << auth.status();
    write(**auth, 5, 3);
    ASSERT_TRUE((*auth)->Reload().ok());  // SIGHUP: reopened, same chain
    write(**auth, 8, 1);
  }
  auto python = [](const std::string& file, const std::string& extra = "") {
    const std::string command = "python3 " + std::string(UNL_SOURCE_DIR) +
                                "/tools/verify_audit_log.py " + file + extra + " >/dev/null";
    return std::system(command.c_str());
  };
  absl::StatusOr<int64_t> lines = VerifyAuditLog(path);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(*lines, 9);
  EXPECT_EQ(python(path), 0);

  std::vector<std::string> all;
  {
    std::istringstream in(ReadAll(path));
    for (std::string line; std::getline(in, line);) all.push_back(line);
  }
  ASSERT_EQ(all.size(), 9u);
  auto write_lines = [&](const std::vector<std::string>& text) {
    const std::string file = tmp.Join("tampered.jsonl");
    std::ofstream out(file, std::ios::trunc);
    for (const std::string& line : text) out << line << "\n";
    return file;
  };
  struct Case {
    const char* what;
    std::vector<std::string> text;
    const char* broken_at;
  };
  std::vector<std::string> edited = all, deleted = all, swapped = all;
  edited[3].replace(edited[3].find("\"code\":\"OK\""), 11, "\"code\":\"NO\"");
  deleted.erase(deleted.begin() + 3);
  std::swap(swapped[2], swapped[3]);
  for (const Case& c :
       {Case{"edited line 4", edited, "line 5:"}, Case{"deleted line 4", deleted, "line 4:"},
        Case{"swapped lines 3 and 4", swapped, "line 3:"}}) {
    const std::string file = write_lines(c.text);
    absl::StatusOr<int64_t> verdict = VerifyAuditLog(file);
    EXPECT_EQ(verdict.status().code(), absl::StatusCode::kDataLoss) << c.what;
    EXPECT_THAT(verdict.status().message(), HasSubstr(c.broken_at)) << c.what;
    EXPECT_NE(python(file), 0) << c.what;
  }
  // A rotated file (lines 5..9) verifies from the hash of the line before it, not from genesis.
  const std::string rotated = write_lines(std::vector<std::string>(all.begin() + 4, all.end()));
  EXPECT_TRUE(VerifyAuditLog(rotated, core::Sha256Hex(all[3])).ok());
  EXPECT_EQ(VerifyAuditLog(rotated).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(python(rotated, " --first-prev " + core::Sha256Hex(all[3])), 0);
}

// GET /metrics with a token file: 401 (with WWW-Authenticate: Bearer) without a known token, 403
// for a token without the metrics or admin role, 200 for either; a metrics-only token has no gRPC
// role. Refusals are audited. --metrics-public serves it without a token.
TEST(MetricsAuthTest, ScrapesNeedAMetricsOrAdminToken) {
  server::testing::TempDir tmp;
  unlearning::testing::ToyRegistries registries;
  const std::string toy_dir = tmp.Join("toy-src");
  unlearning::testing::WriteToyModel(toy_dir, 1.0);
  const std::string token_file = tmp.Join("tokens.jsonl");
  WriteFile(token_file, TokenFileText({{"reader", "tok-query-1", {"query"}, {}},
                                       {"root", "tok-admin-1", {"admin"}, {}},
                                       {"scraper", "tok-metrics-1", {"metrics"}, {}}}));
  for (bool is_public : {false, true}) {
    SCOPED_TRACE(is_public ? "--metrics-public" : "default");
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "127.0.0.1:0";
    options.data_dir = tmp.Join(is_public ? "data-public" : "data");
    options.models = {{"toy", toy_dir}};
    options.methods = &registries.methods;
    options.families = &registries.families;
    options.auth.token_file = token_file;
    options.auth.audit_log = tmp.Join(is_public ? "audit-public.jsonl" : "audit.jsonl");
    options.metrics_public = is_public;
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    const std::string address = (*server)->metrics_address();
    const size_t colon = address.rfind(':');
    httplib::Client client(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
    auto get = [&](const std::string& token) {
      httplib::Headers headers;
      if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
      return client.Get("/metrics", headers);
    };
    auto none = get("");
    ASSERT_TRUE(none);
    if (is_public) {
      EXPECT_EQ(none->status, 200);
      EXPECT_THAT(none->body, HasSubstr("unlearning_build_info"));
      (*server)->Shutdown(absl::Seconds(5));
      continue;
    }
    EXPECT_EQ(none->status, 401);
    EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer realm=\"unlearnd\"");
    EXPECT_THAT(none->body, HasSubstr("no bearer token"));
    EXPECT_THAT(none->body, ::testing::Not(HasSubstr("unlearning_")));
    auto unknown = get("tok-nope");
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 401);
    auto reader = get("tok-query-1");
    ASSERT_TRUE(reader);
    EXPECT_EQ(reader->status, 403);
    EXPECT_THAT(reader->body, HasSubstr("needs the metrics or admin role"));
    for (const char* token : {"tok-metrics-1", "tok-admin-1"}) {
      auto ok = get(token);
      ASSERT_TRUE(ok);
      EXPECT_EQ(ok->status, 200) << token;
      EXPECT_THAT(ok->body, HasSubstr("unlearning_build_info")) << token;
    }
    // The scraper's token opens nothing on the gRPC API.
    auto channel =
        grpc::CreateChannel((*server)->grpc_address(), grpc::InsecureChannelCredentials());
    auto models = v1::ModelService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer tok-metrics-1");
    v1::DescribeModelRequest q;
    q.set_model_id("toy");
    v1::ModelInfo info;
    EXPECT_EQ(models->DescribeModel(&ctx, q, &info).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    (*server)->Shutdown(absl::Seconds(5));
    const std::string audit = ReadAll(options.auth.audit_log);
    EXPECT_THAT(audit, HasSubstr("\"rpc\":\"HTTP/GET /metrics\""));
    EXPECT_THAT(audit, HasSubstr("\"caller\":\"reader\""));
    EXPECT_THAT(audit, HasSubstr("\"code\":\"PERMISSION_DENIED\""));
    EXPECT_THAT(audit, HasSubstr("\"code\":\"UNAUTHENTICATED\""));
    EXPECT_THAT(audit, ::testing::Not(HasSubstr("tok-")));
  }
}

TEST(AuthOptionsTest, NoTokenFileNeedsAnExplicitInsecureFlag) {
  server::testing::TempDir tmp;
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "";
  options.data_dir = tmp.Join("data");
  auto server = UnlearningServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--insecure"));
}

// Expiry: a token past its "expires" is UNAUTHENTICATED naming the time, on a new call and on an
// Erase stream opened while it was valid (the stream re-checks before each request); one still
// valid works.
TEST_F(AuthTest, ATokenPastItsExpiryIsRefusedAndAnOpenStreamStopsThere) {
  const absl::Time now = absl::Now();
  std::string text = TokenFileText(Tokens());
  text += TokenFileLine("retired", "tok-retired", {"admin"}, {}, now - absl::Hours(1)) + "\n";
  text += TokenFileLine("shortlived", "tok-short", {"erase"}, {}, now + absl::Seconds(3)) + "\n";
  text += TokenFileLine("longlived", "tok-long", {"query"}, {}, now + absl::Hours(24)) + "\n";
  WriteFile(token_file_, text);
  ASSERT_TRUE(server_->ReloadAuth().ok());
  EXPECT_EQ(server_->auth().expired_tokens(), 1u);
  const grpc::Status retired = DescribeToy("tok-retired");
  EXPECT_EQ(retired.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(retired.error_message(), HasSubstr("'retired' expired at"));
  EXPECT_TRUE(DescribeToy("tok-long").ok());

  grpc::ClientContext ctx;
  Authorize(ctx, "tok-short");
  auto stream = erasure_->Erase(&ctx);
  stream->WaitForInitialMetadata();  // opened and authorized while the token was valid
  absl::SleepFor(now + absl::Seconds(3.5) - absl::Now());
  const std::string before = Snapshot();
  const v1::ErasureEvent e = SubmitAndClose(stream, "req-after-expiry");
  EXPECT_EQ(e.kind(), v1::ErasureEvent::KIND_REJECTED);
  EXPECT_EQ(e.status_code(), static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
  EXPECT_THAT(e.message(), HasSubstr("'shortlived' expired at"));
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(server_->auth().expired_tokens(), 2u);
}

TEST(TokenTableTest, ParsesTheDocumentedFormatAndRejectsMistakes) {
  const std::string hash = core::Sha256Hex("secret");
  auto table =
      TokenTable::Parse(absl::StrCat("# comment\n\n{\"name\":\"a\",\"sha256\":\"", hash,
                                     "\",\"roles\":[\"query\",\"erase\"],\"models\":[\"m\"]}\n"),
                        "t");
  ASSERT_TRUE(table.ok()) << table.status();
  const TokenEntry* e = table->FindByToken("secret");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "a");
  EXPECT_EQ(e->roles, static_cast<uint32_t>(kRoleQuery | kRoleErase));
  EXPECT_EQ(e->models, std::vector<std::string>{"m"});
  EXPECT_EQ(table->FindByToken("other"), nullptr);
  EXPECT_EQ(e->expires, absl::InfiniteFuture());
  auto expiring = TokenTable::Parse(
      absl::StrCat("{\"name\":\"b\",\"sha256\":\"", hash,
                   "\",\"roles\":[\"query\"],\"expires\":\"2027-06-30T02:00:00+02:00\"}"),
      "t");
  ASSERT_TRUE(expiring.ok()) << expiring.status();
  EXPECT_EQ(expiring->FindByToken("secret")->expires, absl::FromUnixSeconds(1814313600));
  EXPECT_EQ(expiring->ExpiredAt(absl::FromUnixSeconds(1814313599)), 0u);
  EXPECT_EQ(expiring->ExpiredAt(absl::FromUnixSeconds(1814313600)), 1u);
  const std::string line = absl::StrCat("{\"name\":\"a\",\"sha256\":\"", hash, "\",\"roles\":[");
  for (const std::string& bad : {
           absl::StrCat(line, "\"root\"]}"),  // unknown role
           absl::StrCat(line, "]}"),          // no role
           std::string("{\"name\":\"a\",\"token\":\"secret\",\"roles\":[\"admin\"]}"),  // plain
           std::string("{\"name\":\"a\",\"sha256\":\"ABC\",\"roles\":[\"admin\"]}"),    // not hex
           absl::StrCat(line, "\"query\"]}\n", line, "\"erase\"]}"),                    // duplicate
           std::string("not json"),
           absl::StrCat(line, "\"query\"],\"expires\":\"next week\"}"),  // not RFC 3339
           absl::StrCat(line, "\"query\"],\"expires\":1800000000}"),     // not a string
       }) {
    auto parsed = TokenTable::Parse(bad, "t");
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("t:"));
    }
  }
}

}  // namespace
}  // namespace unlearning::server
