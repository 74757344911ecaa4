// DiffusionModel: diffusers-layout loading/saving, DDPM/DDIM sampling with classifier-free
// guidance. Sampler maths after diffusers v0.21 schedulers/scheduling_ddim.py (DDIM, Song et al.
// 2021 Eq. 12 with σ = 0) and scheduling_ddpm.py (Ho et al. 2020 Eq. 6-7, "fixed_small" variance).
#include "core/models/diffusion.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/io/files.h"
#include "core/io/safetensors.h"

namespace unlearning::core {
namespace {

constexpr char kModelIndexFile[] = "model_index.json";
constexpr char kUnetConfigFile[] = "unet/config.json";
constexpr char kUnetWeightsFile[] = "unet/diffusion_pytorch_model.safetensors";
constexpr char kSchedulerConfigFile[] = "scheduler/scheduler_config.json";

absl::Status Annotate(const absl::Status& s, const std::string& prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, ": ", s.message()));
}

absl::Status BadKey(const std::string& key, const nlohmann::json& value, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("scheduler_config.json: \"", key, "\" = ", value.dump(), ": ", why));
}

// Copies `weights` into the module's parameters, checking presence, dtype and shape.
absl::Status CopyWeights(const std::map<std::string, torch::Tensor>& weights,
                         UNet2DModelImpl& module) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    auto it = weights.find(name);
    if (it == weights.end()) {
      return absl::InvalidArgumentError(absl::StrCat("weights: missing tensor ", name));
    }
    const torch::Tensor& src = it->second;
    if (!at::isFloatingType(src.scalar_type())) {
      return absl::InvalidArgumentError(absl::StrCat("weights: tensor ", name, " has dtype ",
                                                     c10::toString(src.scalar_type()),
                                                     ", expected a floating-point dtype"));
    }
    if (src.sizes() != item.value().sizes()) {
      std::ostringstream msg;
      msg << "weights: tensor " << name << " has shape " << src.sizes() << ", expected "
          << item.value().sizes();
      return absl::InvalidArgumentError(msg.str());
    }
    item.value().copy_(src);
  }
  return absl::OkStatus();
}

}  // namespace

// ---- DDPMSchedulerConfig ----

absl::StatusOr<DDPMSchedulerConfig> DDPMSchedulerConfig::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("scheduler_config.json: not a JSON object");
  }
  DDPMSchedulerConfig c;
  if (auto it = json.find("num_train_timesteps"); it != json.end() && !it->is_null()) {
    if (!it->is_number_integer()) return BadKey("num_train_timesteps", *it, "expected an integer");
    c.num_train_timesteps = it->get<int64_t>();
  }
  for (auto [key, out] : {std::pair<const char*, double*>{"beta_start", &c.beta_start},
                          {"beta_end", &c.beta_end},
                          {"clip_sample_range", &c.clip_sample_range}}) {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    if (!it->is_number()) return BadKey(key, *it, "expected a number");
    *out = it->get<double>();
  }
  if (auto it = json.find("clip_sample"); it != json.end() && !it->is_null()) {
    if (!it->is_boolean()) return BadKey("clip_sample", *it, "expected a boolean");
    c.clip_sample = it->get<bool>();
  }
  for (auto [key, out, allowed] : {std::tuple<const char*, std::string*, const char*>{
                                       "beta_schedule", &c.beta_schedule, "linear"},
                                   {"prediction_type", &c.prediction_type, "epsilon"}}) {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    if (!it->is_string() || it->get<std::string>() != allowed) {
      return BadKey(key, *it, absl::StrCat("only \"", allowed, "\" is supported"));
    }
    *out = it->get<std::string>();
  }
  if (auto it = json.find("variance_type");
      it != json.end() && !it->is_null() && (!it->is_string() || *it != "fixed_small")) {
    return BadKey("variance_type", *it, "only \"fixed_small\" is supported");
  }
  if (auto it = json.find("trained_betas"); it != json.end() && !it->is_null()) {
    return BadKey("trained_betas", *it, "explicit betas are not supported");
  }
  if (c.num_train_timesteps < 2 || c.num_train_timesteps > 100000) {
    return BadKey("num_train_timesteps", c.num_train_timesteps, "must be in [2, 100000]");
  }
  if (!(c.beta_start > 0.0 && c.beta_start < 1.0)) {
    return BadKey("beta_start", c.beta_start, "must be in (0, 1)");
  }
  if (!(c.beta_end >= c.beta_start && c.beta_end < 1.0)) {
    return BadKey("beta_end", c.beta_end, "must be in [beta_start, 1)");
  }
  if (!(c.clip_sample_range > 0.0)) {
    return BadKey("clip_sample_range", c.clip_sample_range, "must be positive");
  }
  return c;
}

nlohmann::json DDPMSchedulerConfig::ToJson() const {
  return nlohmann::json{
      {"_class_name", "DDPMScheduler"},
      {"_diffusers_version", "0.21.4"},
      {"num_train_timesteps", num_train_timesteps},
      {"beta_start", beta_start},
      {"beta_end", beta_end},
      {"beta_schedule", beta_schedule},
      {"trained_betas", nullptr},
      {"variance_type", "fixed_small"},
      {"clip_sample", clip_sample},
      {"clip_sample_range", clip_sample_range},
      {"prediction_type", prediction_type},
      {"thresholding", false},
      {"timestep_spacing", "trailing"},
      {"steps_offset", 0},
  };
}

torch::Tensor DDPMSchedulerConfig::Betas() const {
  return at::linspace(beta_start, beta_end, num_train_timesteps,
                      torch::TensorOptions().dtype(torch::kFloat64));
}

torch::Tensor DDPMSchedulerConfig::AlphasCumprod() const { return at::cumprod(1.0 - Betas(), 0); }

std::vector<int64_t> DDPMSchedulerConfig::SamplingTimesteps(int64_t steps) const {
  std::vector<int64_t> out;
  const double ratio = static_cast<double>(num_train_timesteps) / static_cast<double>(steps);
  for (int64_t k = 0; k < steps; ++k) {
    out.push_back(std::llround(static_cast<double>(num_train_timesteps) - k * ratio) - 1);
  }
  return out;
}

absl::StatusOr<torch::Tensor> RunDiffusionSampler(
    const DDPMSchedulerConfig& scheduler,
    const std::function<torch::Tensor(const torch::Tensor& x_t, int64_t t)>& eps_fn,
    torch::Tensor x, int64_t steps, bool ddim, at::Generator gen, const CancellationToken* cancel) {
  const torch::Tensor abar = scheduler.AlphasCumprod();  // [T] float64 CPU
  const std::vector<int64_t> timesteps = scheduler.SamplingTimesteps(steps);
  const double range = scheduler.clip_sample_range;
  const auto cpu_f32 = torch::TensorOptions().dtype(torch::kFloat32);
  for (size_t i = 0; i < timesteps.size(); ++i) {
    if (cancel != nullptr && cancel->cancelled()) {
      return absl::CancelledError(absl::StrCat("sampling cancelled at step ", i));
    }
    const int64_t t = timesteps[i];
    const int64_t prev_t = i + 1 < timesteps.size() ? timesteps[i + 1] : -1;
    const double a_t = abar[t].item<double>();
    const double a_prev = prev_t >= 0 ? abar[prev_t].item<double>() : 1.0;
    torch::Tensor eps = eps_fn(x, t);
    torch::Tensor x0 = (x - eps * std::sqrt(1.0 - a_t)) / std::sqrt(a_t);
    if (scheduler.clip_sample) x0 = x0.clamp(-range, range);
    if (ddim) {
      // DDIM (η = 0) with the ε implied by the clipped x0.
      eps = (x - x0 * std::sqrt(a_t)) / std::sqrt(1.0 - a_t);
      x = x0 * std::sqrt(a_prev) + eps * std::sqrt(1.0 - a_prev);
    } else {
      const double alpha_t = a_t / a_prev;
      const double beta_t = 1.0 - alpha_t;
      const double coef_x0 = std::sqrt(a_prev) * beta_t / (1.0 - a_t);
      const double coef_xt = std::sqrt(alpha_t) * (1.0 - a_prev) / (1.0 - a_t);
      x = x0 * coef_x0 + x * coef_xt;
      if (prev_t >= 0) {
        const double variance = std::max((1.0 - a_prev) / (1.0 - a_t) * beta_t, 1e-20);
        torch::Tensor noise = at::randn(x.sizes(), gen, cpu_f32).to(x.device());
        x = x + noise * std::sqrt(variance);
      }
    }
  }
  return x;
}

absl::Status ValidateSampleLabels(const torch::Tensor& labels, int64_t num_classes) {
  if (!labels.defined() || labels.dim() != 1 || labels.scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError("sample: labels must be a 1-D int64 tensor");
  }
  if (labels.size(0) == 0) return absl::InvalidArgumentError("sample: labels is empty");
  {
    torch::Tensor cpu = labels.to(torch::kCPU);
    const int64_t lo = cpu.min().item<int64_t>();
    const int64_t hi = cpu.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample: label ", lo < 0 ? lo : hi, " outside [0, ", num_classes, ")"));
    }
  }
  return absl::OkStatus();
}

// ---- DiffusionModel ----

DiffusionModel::DiffusionModel(UNet2DModel module, DDPMSchedulerConfig scheduler,
                               torch::Device device)
    : module_(std::move(module)),
      scheduler_(std::move(scheduler)),
      device_(device),
      alphas_cumprod_(scheduler_.AlphasCumprod().to(device, torch::kFloat32)) {}

std::unique_ptr<DiffusionModel> DiffusionModel::Create(const UNet2DConfig& unet,
                                                       const DDPMSchedulerConfig& scheduler,
                                                       torch::Device device, uint64_t seed) {
  // LibTorch initialisers draw from the default generator; seed it for reproducibility.
  torch::manual_seed(seed);
  UNet2DModel module(unet);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : module->named_parameters()) {
      if (item.key().rfind("conv_out.", 0) == 0) item.value().zero_();
    }
  }
  module->to(device);
  return std::unique_ptr<DiffusionModel>(new DiffusionModel(std::move(module), scheduler, device));
}

bool DiffusionModel::Recognises(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(JoinPath(dir, kModelIndexFile), ec)) return true;
  absl::StatusOr<nlohmann::json> config = ReadJsonFile(JoinPath(dir, kUnetConfigFile));
  if (!config.ok() || !config->is_object()) return false;
  auto it = config->find("_class_name");
  return it != config->end() && *it == "UNet2DModel";
}

absl::StatusOr<std::unique_ptr<DiffusionModel>> DiffusionModel::Load(const std::string& dir,
                                                                     torch::Device device) {
  const std::string unet_path = JoinPath(dir, kUnetConfigFile);
  UNL_ASSIGN_OR_RETURN(nlohmann::json unet_json, ReadJsonFile(unet_path));
  absl::StatusOr<UNet2DConfig> unet = UNet2DConfig::FromJson(unet_json);
  if (!unet.ok()) return Annotate(unet.status(), unet_path);
  const std::string scheduler_path = JoinPath(dir, kSchedulerConfigFile);
  UNL_ASSIGN_OR_RETURN(nlohmann::json scheduler_json, ReadJsonFile(scheduler_path));
  absl::StatusOr<DDPMSchedulerConfig> scheduler = DDPMSchedulerConfig::FromJson(scheduler_json);
  if (!scheduler.ok()) return Annotate(scheduler.status(), scheduler_path);
  const std::string weights_path = JoinPath(dir, kUnetWeightsFile);
  if (!std::filesystem::exists(weights_path)) {
    return absl::NotFoundError(absl::StrCat("no such file: ", weights_path));
  }
  absl::StatusOr<SafetensorsFile> weights = ReadSafetensors(weights_path);
  if (!weights.ok()) return Annotate(weights.status(), weights_path);
  return TorchCall("loading model", [&]() -> absl::StatusOr<std::unique_ptr<DiffusionModel>> {
    UNet2DModel module(*unet);
    absl::Status copied = CopyWeights(weights->tensors, *module);
    if (!copied.ok()) return Annotate(copied, weights_path);
    weights->tensors.clear();
    module->to(device);
    module->eval();
    return std::unique_ptr<DiffusionModel>(
        new DiffusionModel(std::move(module), *std::move(scheduler), device));
  });
}

int64_t DiffusionModel::num_parameters() const {
  int64_t n = 0;
  for (const torch::Tensor& p : module_->parameters()) n += p.numel();
  return n;
}

absl::Status DiffusionModel::Save(const std::string& dir) const {
  if (!std::filesystem::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("model directory does not exist: ", dir));
  }
  absl::StatusOr<std::map<std::string, torch::Tensor>> tensors =
      TorchCall("saving model", [&]() -> absl::StatusOr<std::map<std::string, torch::Tensor>> {
        torch::NoGradGuard no_grad;
        std::map<std::string, torch::Tensor> out;
        for (const auto& item : module_->named_parameters()) {
          out[item.key()] = item.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
        }
        return out;
      });
  if (!tensors.ok()) return tensors.status();
  std::error_code ec;
  for (const char* sub : {"unet", "scheduler"}) {
    std::filesystem::create_directories(JoinPath(dir, sub), ec);
    if (ec)
      return absl::InternalError(absl::StrCat("mkdir ", JoinPath(dir, sub), ": ", ec.message()));
  }
  const nlohmann::json index = {
      {"_class_name", "DDPMPipeline"},
      {"_diffusers_version", "0.21.4"},
      {"unet", {"diffusers", "UNet2DModel"}},
      {"scheduler", {"diffusers", "DDPMScheduler"}},
  };
  UNL_RETURN_IF_ERROR(WriteFileSynced(JoinPath(dir, kModelIndexFile), index.dump(2) + "\n"));
  UNL_RETURN_IF_ERROR(
      WriteFileSynced(JoinPath(dir, kUnetConfigFile), unet_config().ToJson().dump(2) + "\n"));
  UNL_RETURN_IF_ERROR(
      WriteFileSynced(JoinPath(dir, kSchedulerConfigFile), scheduler_.ToJson().dump(2) + "\n"));
  return WriteSafetensors(JoinPath(dir, kUnetWeightsFile), *tensors, {{"format", "pt"}});
}

std::unique_ptr<DiffusionModel> DiffusionModel::CloneDiffusion(torch::Device device) const {
  UNet2DModel copy(unet_config());
  copy->to(device);
  {
    torch::NoGradGuard no_grad;
    auto src_params = module_->named_parameters();
    for (auto& item : copy->named_parameters()) {
      const torch::Tensor& src = src_params[item.key()];
      item.value().copy_(src);
      item.value().set_requires_grad(src.requires_grad());
    }
  }
  copy->train(module_->is_training());
  return std::unique_ptr<DiffusionModel>(new DiffusionModel(std::move(copy), scheduler_, device));
}

absl::StatusOr<std::unique_ptr<Model>> DiffusionModel::Clone(torch::Device device) const {
  return TorchCall("cloning model", [&]() -> absl::StatusOr<std::unique_ptr<Model>> {
    return std::unique_ptr<Model>(CloneDiffusion(device));
  });
}

std::string DiffusionModel::class_name(int64_t id) const {
  auto it = unet_config().id2label.find(id);
  return it != unet_config().id2label.end() ? it->second : std::to_string(id);
}

ImageSpec DiffusionModel::image_spec() const {
  const UNet2DConfig& c = unet_config();
  return ImageSpec{c.out_channels, c.sample_size, c.sample_size};
}

torch::Tensor DiffusionModel::PredictNoise(const torch::Tensor& x_t, const torch::Tensor& t,
                                           const torch::Tensor& labels) const {
  return module_.ptr()->forward(x_t, t, labels);
}

absl::StatusOr<torch::Tensor> DiffusionModel::Sample(const torch::Tensor& labels,
                                                     const SampleOptions& options,
                                                     const CancellationToken* cancel) const {
  UNL_RETURN_IF_ERROR(ValidateSampleLabels(labels, num_classes()));
  const int64_t batch = labels.size(0);
  if (options.steps < 1 || options.steps > max_steps()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample: steps must be in [1, ", max_steps(), "], got ", options.steps));
  }
  const bool ddim = options.sampler == "ddim";
  if (!ddim && options.sampler != "ancestral") {
    return absl::InvalidArgumentError(absl::StrCat(
        "sample: sampler must be \"ddim\" or \"ancestral\", got \"", options.sampler, "\""));
  }
  if (!std::isfinite(options.guidance_scale) || options.guidance_scale < 0.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sample: guidance_scale must be finite and >= 0, got ", options.guidance_scale));
  }
  return TorchCall("sample", [&]() -> absl::StatusOr<torch::Tensor> {
    c10::InferenceMode guard;
    UNet2DModelImpl& unet = *module_.ptr();
    const UNet2DConfig& c = unet_config();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    auto cpu_f32 = torch::TensorOptions().dtype(torch::kFloat32);
    torch::Tensor x =
        at::randn({batch, c.in_channels, c.sample_size, c.sample_size}, gen, cpu_f32).to(device_);
    const bool guided = options.guidance_scale != 1.0;
    torch::Tensor cond = labels.to(device_);
    // Conditional and unconditional halves go through the UNet as one batch.
    torch::Tensor both_labels =
        guided ? at::cat({cond, at::full_like(cond, c.null_class_id)}) : cond;
    auto eps_fn = [&](const torch::Tensor& x_t, int64_t t) {
      torch::Tensor model_in = guided ? at::cat({x_t, x_t}) : x_t;
      torch::Tensor t_batch = at::full({model_in.size(0)}, t,
                                       torch::TensorOptions().dtype(torch::kInt64).device(device_));
      torch::Tensor eps = unet.forward(model_in, t_batch, both_labels);
      if (!guided) return eps;
      torch::Tensor eps_c = eps.narrow(0, 0, batch);
      torch::Tensor eps_u = eps.narrow(0, batch, batch);
      return eps_u + (eps_c - eps_u) * options.guidance_scale;
    };
    UNL_ASSIGN_OR_RETURN(
        x, RunDiffusionSampler(scheduler_, eps_fn, x, options.steps, ddim, gen, cancel));
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0);
  });
}

}  // namespace unlearning::core
