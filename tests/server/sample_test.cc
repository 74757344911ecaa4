// The Sample RPC on a real (tiny, randomly initialised) class-conditional UNet in the diffusers
// layout, served through the built-in family registry: streamed PNG or raw images, determinism
// for a seed, and every bad input with its code.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "core/io/png.h"
#include "core/models/diffusion.h"
#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

using ::testing::HasSubstr;

class SampleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core::UNet2DConfig unet;
    unet.sample_size = 8;
    unet.block_out_channels = {8, 16};
    unet.norm_num_groups = 4;
    unet.num_class_embeds = 4;
    unet.null_class_id = 3;
    auto model = core::DiffusionModel::Create(unet, core::DDPMSchedulerConfig{}, torch::kCPU, 1);
    const std::string dir = tmp_.Join("ddpm");
    std::filesystem::create_directories(dir);
    ASSERT_TRUE(model->Save(dir).ok());
    ServerOptions options;
    options.auth.insecure = true;  // no token file: explicit (docs/security.md)
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "";
    options.data_dir = tmp_.Join("data");
    options.models = {{"ddpm", dir}};
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    inference_ = v1::InferenceService::NewStub(channel);
    models_ = v1::ModelService::NewStub(channel);
  }

  grpc::Status Sample(const v1::SampleRequest& request, std::vector<v1::SampleResponse>* out) {
    grpc::ClientContext ctx;
    auto reader = inference_->Sample(&ctx, request);
    v1::SampleResponse r;
    while (reader->Read(&r)) out->push_back(r);
    return reader->Finish();
  }

  server::testing::TempDir tmp_;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::InferenceService::Stub> inference_;
  std::unique_ptr<v1::ModelService::Stub> models_;
};

TEST_F(SampleTest, StreamsOneImagePerLabelDeterministically) {
  {
    grpc::ClientContext ctx;
    v1::DescribeModelRequest req;
    req.set_model_id("ddpm");
    v1::ModelInfo info;
    ASSERT_TRUE(models_->DescribeModel(&ctx, req, &info).ok());
    EXPECT_EQ(info.family(), v1::MODEL_FAMILY_DIFFUSION);
    EXPECT_EQ(info.architecture(), "UNet2DModel");
  }
  v1::SampleRequest request;
  request.set_model_id("ddpm");
  for (int64_t label : {0, 2, 1}) request.add_labels(label);
  request.set_steps(4);
  request.set_seed(9);
  std::vector<v1::SampleResponse> first, second;
  ASSERT_TRUE(Sample(request, &first).ok());
  ASSERT_TRUE(Sample(request, &second).ok());
  ASSERT_EQ(first.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(first[i].index(), static_cast<int>(i));
    EXPECT_EQ(first[i].label(), request.labels(static_cast<int>(i)));
    EXPECT_EQ(first[i].version(), 1);
    auto image = core::DecodePng(first[i].image().png());
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->sizes(), (std::vector<int64_t>{1, 8, 8}));
    EXPECT_EQ(first[i].image().png(), second[i].image().png());  // same seed, same bytes
  }
  request.set_seed(10);
  std::vector<v1::SampleResponse> other;
  ASSERT_TRUE(Sample(request, &other).ok());
  EXPECT_NE(other[0].image().png(), first[0].image().png());

  request.set_format("raw");
  std::vector<v1::SampleResponse> raw;
  ASSERT_TRUE(Sample(request, &raw).ok());
  ASSERT_EQ(raw.size(), 3u);
  EXPECT_EQ(raw[0].image().raw().dtype(), "float32");
  EXPECT_EQ(raw[0].image().raw().data().size(), 8u * 8u * sizeof(float));
}

TEST_F(SampleTest, BadInputsGetClearCodes) {
  auto base = [] {
    v1::SampleRequest r;
    r.set_model_id("ddpm");
    r.add_labels(0);
    r.set_steps(2);
    return r;
  };
  struct Case {
    std::string name;
    v1::SampleRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  {
    auto r = base();
    r.clear_labels();
    cases.push_back({"no labels", r, grpc::StatusCode::INVALID_ARGUMENT, "labels is empty"});
  }
  {
    auto r = base();
    r.add_labels(3);  // the null label is not a class
    cases.push_back({"label out of range", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "labels[1] = 3 is not a class of the model (0..2)"});
  }
  {
    auto r = base();
    r.set_steps(5000);
    cases.push_back(
        {"too many steps", r, grpc::StatusCode::INVALID_ARGUMENT, "steps must be in [1, 1000]"});
  }
  {
    auto r = base();
    for (int i = 0; i < 64; ++i) r.add_labels(0);
    cases.push_back({"too many images", r, grpc::StatusCode::RESOURCE_EXHAUSTED, "limit is 64"});
  }
  {
    auto r = base();
    r.set_sampler("euler");
    cases.push_back(
        {"unknown sampler", r, grpc::StatusCode::INVALID_ARGUMENT, "ddim or ancestral"});
  }
  {
    auto r = base();
    r.set_guidance_scale(-1);
    cases.push_back({"negative guidance", r, grpc::StatusCode::INVALID_ARGUMENT, "guidance_scale"});
  }
  {
    auto r = base();
    r.set_format("jpeg");
    cases.push_back({"unknown format", r, grpc::StatusCode::INVALID_ARGUMENT, "png or raw"});
  }
  {
    auto r = base();
    r.set_model_id("nope");
    cases.push_back({"unknown model", r, grpc::StatusCode::NOT_FOUND, "nope"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<v1::SampleResponse> out;
    grpc::Status status = Sample(c.request, &out);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
    EXPECT_TRUE(out.empty());
  }
  // Classify on a generator is refused for the right reason.
  grpc::ClientContext ctx;
  v1::ClassifyRequest classify;
  classify.set_model_id("ddpm");
  classify.add_images()->set_png("x");
  v1::ClassifyResponse response;
  grpc::Status status = inference_->Classify(&ctx, classify, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("not an image classifier"));
}

}  // namespace
}  // namespace unlearning::server
