// The Classify RPC on a real (tiny, randomly initialised) ViT served by the built-in family
// registry: PNG and raw inputs, top-k against the model computed directly, and every bad input
// with its code.
#include <filesystem>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "core/data/idx.h"
#include "core/io/png.h"
#include "core/models/vit.h"
#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

using ::testing::HasSubstr;

class ClassifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core::ViTConfig config;
    config.hidden_size = 16;
    config.num_hidden_layers = 1;
    config.num_attention_heads = 2;
    config.intermediate_size = 32;
    config.id2label = core::FashionMnistClassNames();
    auto vit = core::VitClassifier::Create(config, torch::kCPU, /*seed=*/3);
    ASSERT_TRUE(vit.ok()) << vit.status();
    vit_ = *std::move(vit);
    const std::string dir = tmp_.Join("vit");
    std::filesystem::create_directories(dir);
    ASSERT_TRUE(vit_->Save(dir).ok());

    ServerOptions options;
    options.auth.insecure = true;  // no token file: explicit (docs/security.md)
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "";
    options.data_dir = tmp_.Join("data");
    options.models = {{"vit", dir}};
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    inference_ = v1::InferenceService::NewStub(channel);
    models_ = v1::ModelService::NewStub(channel);
  }

  grpc::Status Classify(const v1::ClassifyRequest& request, v1::ClassifyResponse* response) {
    grpc::ClientContext ctx;
    return inference_->Classify(&ctx, request, response);
  }

  server::testing::TempDir tmp_;
  std::unique_ptr<core::VitClassifier> vit_;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::InferenceService::Stub> inference_;
  std::unique_ptr<v1::ModelService::Stub> models_;
};

TEST_F(ClassifyTest, PngAndRawImagesGetTheModelsTopK) {
  {
    grpc::ClientContext ctx;
    v1::DescribeModelRequest req;
    req.set_model_id("vit");
    v1::ModelInfo info;
    ASSERT_TRUE(models_->DescribeModel(&ctx, req, &info).ok());
    EXPECT_EQ(info.family(), v1::MODEL_FAMILY_IMAGE_CLASSIFIER);
    EXPECT_EQ(info.architecture(), "ViTForImageClassification");
  }
  torch::manual_seed(0);
  const torch::Tensor images = torch::rand({2, 1, 28, 28});
  const torch::Tensor png_pixels = images[0].mul(255).round().div(255);  // what PNG keeps
  v1::ClassifyRequest request;
  request.set_model_id("vit");
  request.set_top_k(3);
  auto png = core::EncodePng(images[0]);
  ASSERT_TRUE(png.ok());
  request.add_images()->set_png(*png);
  v1::RawImage* raw = request.add_images()->mutable_raw();
  raw->add_shape(28);
  raw->add_shape(28);
  raw->set_dtype("float32");
  const torch::Tensor contiguous = images[1].contiguous();
  raw->set_data(std::string(reinterpret_cast<const char*>(contiguous.data_ptr<float>()),
                            28 * 28 * sizeof(float)));
  v1::ClassifyResponse response;
  grpc::Status status = Classify(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 2);
  EXPECT_EQ(response.version(), 1);

  const torch::Tensor expected =
      vit_->ClassifyLogits(torch::stack({png_pixels, images[1]})).softmax(1);
  for (int i = 0; i < 2; ++i) {
    const auto& top = response.results(i).top();
    ASSERT_EQ(top.size(), 3);
    const auto [values, indices] = expected[i].topk(3);
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(top[k].class_id(), indices[k].item<int64_t>());
      EXPECT_NEAR(top[k].probability(), values[k].item<double>(), 1e-5);
      EXPECT_EQ(top[k].label(), core::FashionMnistClassNames()[top[k].class_id()]);
    }
    EXPECT_GE(top[0].probability(), top[1].probability());
  }
}

TEST_F(ClassifyTest, BadInputsGetClearCodes) {
  auto base = [] {
    v1::ClassifyRequest r;
    r.set_model_id("vit");
    return r;
  };
  struct Case {
    std::string name;
    v1::ClassifyRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({"no images", base(), grpc::StatusCode::INVALID_ARGUMENT, "images is empty"});
  {
    auto r = base();
    r.add_images()->set_png("not a png");
    cases.push_back({"corrupt png", r, grpc::StatusCode::INVALID_ARGUMENT, "images[0]"});
  }
  {
    auto r = base();
    auto png = core::EncodePng(torch::rand({1, 32, 32}));
    r.add_images()->set_png(*png);
    cases.push_back(
        {"wrong size", r, grpc::StatusCode::INVALID_ARGUMENT, "the model takes 1x28x28"});
  }
  {
    auto r = base();
    v1::RawImage* raw = r.add_images()->mutable_raw();
    raw->add_shape(28);
    raw->add_shape(28);
    raw->set_dtype("uint8");
    raw->set_data(std::string(10, '\0'));
    cases.push_back({"short raw data", r, grpc::StatusCode::INVALID_ARGUMENT, "need 784"});
  }
  {
    auto r = base();
    v1::RawImage* raw = r.add_images()->mutable_raw();
    raw->add_shape(28);
    raw->add_shape(28);
    raw->set_dtype("float64");
    cases.push_back({"bad dtype", r, grpc::StatusCode::INVALID_ARGUMENT, "float64"});
  }
  {
    auto r = base();
    auto png = core::EncodePng(torch::rand({1, 28, 28}));
    r.add_images()->set_png(*png);
    r.set_top_k(11);
    cases.push_back({"top_k too large", r, grpc::StatusCode::INVALID_ARGUMENT, "top_k"});
  }
  {
    auto r = base();
    auto png = core::EncodePng(torch::rand({1, 28, 28}));
    for (int i = 0; i < 257; ++i) r.add_images()->set_png(*png);
    cases.push_back({"too many", r, grpc::StatusCode::RESOURCE_EXHAUSTED, "limit is 256"});
  }
  {
    auto r = base();
    r.set_model_id("nope");
    r.add_images()->set_png("x");
    cases.push_back({"unknown model", r, grpc::StatusCode::NOT_FOUND, "nope"});
  }
  {
    auto r = base();
    r.set_version(7);
    r.add_images()->set_png("x");
    cases.push_back({"unknown version", r, grpc::StatusCode::NOT_FOUND, "no version 7"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ClassifyResponse response;
    grpc::Status status = Classify(c.request, &response);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace unlearning::server
