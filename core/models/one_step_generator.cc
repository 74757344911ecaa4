#include "core/models/one_step_generator.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/io/files.h"

namespace unlearning::core {
namespace {

constexpr char kModelIndexFile[] = "model_index.json";
constexpr char kConfigFile[] = "generator_config.json";
constexpr char kPipelineClass[] = "OneStepGeneratorPipeline";
constexpr char kOnlineDir[] = "online";

absl::Status BadKey(const std::string& key, const nlohmann::json& value, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat(kConfigFile, ": \"", key, "\" = ", value.dump(), ": ", why));
}

}  // namespace

absl::StatusOr<OneStepGeneratorConfig> OneStepGeneratorConfig::FromJson(
    const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(kConfigFile, ": not a JSON object"));
  }
  OneStepGeneratorConfig c;
  if (auto it = json.find("init_timestep"); it != json.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return BadKey("init_timestep", *it, "must be an integer >= 0");
    }
    c.init_timestep = it->get<int64_t>();
  }
  if (auto it = json.find("method"); it != json.end()) {
    if (!it->is_string()) return BadKey("method", *it, "must be a string");
    c.method = it->get<std::string>();
  }
  if (auto it = json.find("forgotten_classes"); it != json.end()) {
    if (!it->is_array()) return BadKey("forgotten_classes", *it, "must be an array of class ids");
    for (const nlohmann::json& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        return BadKey("forgotten_classes", *it, "must be an array of class ids >= 0");
      }
      c.forgotten_classes.push_back(v.get<int64_t>());
    }
  }
  if (auto it = json.find("overrides"); it != json.end()) {
    if (!it->is_object()) return BadKey("overrides", *it, "must map class ids to class ids");
    for (const auto& [key, value] : it->items()) {
      int64_t from = 0;
      try {
        size_t used = 0;
        from = std::stoll(key, &used);
        if (used != key.size()) throw std::invalid_argument(key);
      } catch (const std::exception&) {
        return BadKey("overrides", *it, absl::StrCat("key \"", key, "\" is not a class id"));
      }
      if (!value.is_number_integer() || value.get<int64_t>() < -1) {
        return BadKey("overrides", *it, "values must be class ids or -1 (a random retained class)");
      }
      c.overrides[from] = value.get<int64_t>();
    }
  }
  if (auto it = json.find("teacher_guidance"); it != json.end()) {
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0.0) {
      return BadKey("teacher_guidance", *it, "must be a finite number >= 0");
    }
    c.teacher_guidance = it->get<double>();
  }
  return c;
}

nlohmann::json OneStepGeneratorConfig::ToJson() const {
  nlohmann::json overrides_json = nlohmann::json::object();
  for (const auto& [from, to] : overrides) overrides_json[std::to_string(from)] = to;
  return {{"_class_name", "OneStepGenerator"},
          {"init_timestep", init_timestep},
          {"method", method},
          {"forgotten_classes", forgotten_classes},
          {"overrides", overrides_json},
          {"teacher_guidance", teacher_guidance}};
}

OneStepGenerator::OneStepGenerator(std::unique_ptr<DiffusionModel> generator,
                                   std::unique_ptr<DiffusionModel> online,
                                   OneStepGeneratorConfig config,
                                   std::shared_ptr<const DiffusionModel> teacher)
    : generator_(std::move(generator)),
      online_(std::move(online)),
      config_(std::move(config)),
      teacher_(std::move(teacher)) {}

bool OneStepGenerator::Recognises(const std::string& dir) {
  absl::StatusOr<nlohmann::json> index = ReadJsonFile(JoinPath(dir, kModelIndexFile));
  if (!index.ok() || !index->is_object()) return false;
  auto it = index->find("_class_name");
  return it != index->end() && *it == kPipelineClass;
}

absl::StatusOr<std::unique_ptr<OneStepGenerator>> OneStepGenerator::Load(
    const std::string& dir, torch::Device device, std::shared_ptr<const DiffusionModel> teacher) {
  const std::string config_path = JoinPath(dir, kConfigFile);
  std::error_code ec;
  if (!std::filesystem::exists(config_path, ec)) {
    return absl::NotFoundError(absl::StrCat("no such file: ", config_path));
  }
  UNL_ASSIGN_OR_RETURN(nlohmann::json config_json, ReadJsonFile(config_path));
  UNL_ASSIGN_OR_RETURN(OneStepGeneratorConfig config,
                       OneStepGeneratorConfig::FromJson(config_json));
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<DiffusionModel> generator,
                       DiffusionModel::Load(dir, device));
  if (config.init_timestep >= generator->scheduler_config().num_train_timesteps) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": init_timestep ", config.init_timestep, " is not a timestep of the ",
        generator->scheduler_config().num_train_timesteps, "-step scheduler"));
  }
  std::unique_ptr<DiffusionModel> online;
  const std::string online_dir = JoinPath(dir, kOnlineDir);
  if (std::filesystem::is_directory(online_dir, ec)) {
    UNL_ASSIGN_OR_RETURN(online, DiffusionModel::Load(online_dir, device));
  }
  if (teacher != nullptr && teacher->unet_config().ToJson() != generator->unet_config().ToJson()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": the generator's UNet config differs from its teacher's"));
  }
  return std::make_unique<OneStepGenerator>(std::move(generator), std::move(online),
                                            std::move(config), std::move(teacher));
}

torch::Tensor OneStepGenerator::Generate(const DiffusionModel& net, int64_t init_timestep,
                                         const torch::Tensor& z, const torch::Tensor& labels) {
  const torch::Tensor abar = net.alphas_cumprod()[init_timestep];
  const torch::Tensor a = abar.sqrt(), b = (1.0 - abar).sqrt();
  const torch::Tensor x_init = b * z;
  const torch::Tensor t = at::full({z.size(0)}, init_timestep,
                                   torch::TensorOptions().dtype(torch::kInt64).device(z.device()));
  return (x_init - b * net.PredictNoise(x_init, t, labels)) / a;
}

absl::Status OneStepGenerator::Save(const std::string& dir) const {
  UNL_RETURN_IF_ERROR(generator_->Save(dir));
  const nlohmann::json index = {
      {"_class_name", kPipelineClass},
      {"_diffusers_version", "0.21.4"},
      {"unet", {"diffusers", "UNet2DModel"}},
      {"scheduler", {"diffusers", "DDPMScheduler"}},
  };
  UNL_RETURN_IF_ERROR(WriteFileSynced(JoinPath(dir, kModelIndexFile), index.dump(2) + "\n"));
  UNL_RETURN_IF_ERROR(WriteFileSynced(JoinPath(dir, kConfigFile), config_.ToJson().dump(2) + "\n"));
  if (online_ != nullptr) {
    const std::string online_dir = JoinPath(dir, kOnlineDir);
    std::error_code ec;
    std::filesystem::create_directories(online_dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("mkdir ", online_dir, ": ", ec.message()));
    UNL_RETURN_IF_ERROR(online_->Save(online_dir));
  }
  return absl::OkStatus();
}

std::vector<int64_t> OneStepGenerator::forgotten_classes() const {
  std::vector<int64_t> out = config_.forgotten_classes;
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<Model>> OneStepGenerator::Clone(torch::Device device) const {
  return TorchCall("cloning model", [&]() -> absl::StatusOr<std::unique_ptr<Model>> {
    return std::unique_ptr<Model>(new OneStepGenerator(
        generator_->CloneDiffusion(device),
        online_ != nullptr ? online_->CloneDiffusion(device) : nullptr, config_, teacher_));
  });
}

absl::StatusOr<torch::Tensor> OneStepGenerator::Sample(const torch::Tensor& labels,
                                                       const SampleOptions& options,
                                                       const CancellationToken* cancel) const {
  UNL_RETURN_IF_ERROR(ValidateSampleLabels(labels, num_classes()));
  if (options.steps != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample: this version is a one-step generator (", config_.method,
                     "): steps must be 1 or unset, got ", options.steps));
  }
  if (cancel != nullptr && cancel->cancelled()) {
    return absl::CancelledError("sampling cancelled before the first step");
  }
  return TorchCall("sample", [&]() -> absl::StatusOr<torch::Tensor> {
    c10::InferenceMode guard;
    const ImageSpec spec = image_spec();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    const torch::Tensor z = at::randn({labels.size(0), spec.channels, spec.height, spec.width}, gen,
                                      torch::TensorOptions().dtype(torch::kFloat32))
                                .to(device());
    const torch::Tensor x0 =
        Generate(*generator_, config_.init_timestep, z, labels.to(device())).clamp(-1.0, 1.0);
    return (x0 + 1.0) * 0.5;
  });
}

}  // namespace unlearning::core
