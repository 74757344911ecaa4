// The config.json parsers of the model families on arbitrary bytes: the input is parsed as JSON
// (nlohmann, no exceptions) and handed to LlamaConfig, ViTConfig (+ ViTImageProcessorConfig on the
// same object) and UNet2DConfig. Never a crash; refusals are kInvalidArgument; an accepted config
// writes a config.json (ToJson) that parses back to the same config.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/models/causal_lm.h"
#include "core/models/unet.h"
#include "core/models/vit.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// FromJson(ToJson(c)) gives c back (compared through ToJson).
template <typename Config>
void CheckRoundTrip(const Config& c) {
  const nlohmann::json written = c.ToJson();
  absl::StatusOr<Config> back = Config::FromJson(written);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back->ToJson() == written);
}

}  // namespace

namespace {

// config.json files as the project writes them (ToJson of the defaults and of a labelled ViT).
void WriteSeeds(const std::string& dir) {
  using namespace unlearning::core;  // NOLINT(google-build-using-namespace)
  unlearning::fuzz::WriteSeed(dir, "llama.json", LlamaConfig().ToJson().dump(2));
  ViTConfig vit;
  vit.id2label = {"T-shirt/top", "Trouser", "Pullover"};
  vit.forgotten_classes = {1};
  nlohmann::json vit_json = vit.ToJson();
  vit_json.update(ViTImageProcessorConfig::Default(vit).ToJson());
  unlearning::fuzz::WriteSeed(dir, "vit.json", vit_json.dump(2));
  UNet2DConfig unet;
  unet.id2label = {{0, "zero"}, {1, "one"}};
  unlearning::fuzz::WriteSeed(dir, "unet.json", unet.ToJson().dump(2));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  unlearning::fuzz::MaybeWriteSeeds(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unlearning::core;  // NOLINT(google-build-using-namespace)
  const nlohmann::json json = nlohmann::json::parse(data, data + size, nullptr,
                                                    /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;

  absl::StatusOr<LlamaConfig> llama = LlamaConfig::FromJson(json);
  FUZZ_CHECK_OK_OR_INVALID(llama.status());
  if (llama.ok()) CheckRoundTrip(*llama);

  absl::StatusOr<ViTConfig> vit = ViTConfig::FromJson(json);
  FUZZ_CHECK_OK_OR_INVALID(vit.status());
  if (vit.ok()) {
    CheckRoundTrip(*vit);
    absl::StatusOr<ViTImageProcessorConfig> pre = ViTImageProcessorConfig::FromJson(json, *vit);
    FUZZ_CHECK_OK_OR_INVALID(pre.status());
    if (pre.ok()) FUZZ_CHECK(ViTImageProcessorConfig::FromJson(pre->ToJson(), *vit).ok());
  }

  absl::StatusOr<UNet2DConfig> unet = UNet2DConfig::FromJson(json);
  FUZZ_CHECK_OK_OR_INVALID(unet.status());
  if (unet.ok()) CheckRoundTrip(*unet);
  return 0;
}
