// VitClassifier: creating, loading, saving, cloning and inference around
// ViTForImageClassification.
#include "core/models/vit.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
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

constexpr char kConfigFile[] = "config.json";
constexpr char kWeightsFile[] = "model.safetensors";
constexpr char kPreprocessorFile[] = "preprocessor_config.json";

// Copies `weights` into the module's parameters (not LoRA factors), checking presence, dtype and
// shape. Extra tensors in the file (e.g. a pooler) are ignored.
absl::Status CopyWeights(const std::map<std::string, torch::Tensor>& weights,
                         ViTForImageClassificationImpl& module) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    if (IsLoraFactor(name)) continue;
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
    item.value().copy_(src);  // upcasts bf16/f16 to float32
  }
  return absl::OkStatus();
}

// Truncated normal(0, std) on [-2 std, 2 std] (timm / HF trunc_normal_), by resampling.
void TruncatedNormal(torch::Tensor& t, double std, at::Generator& gen) {
  t.normal_(0.0, std, gen);
  for (int round = 0; round < 64; ++round) {
    torch::Tensor outside = t.abs() > 2.0 * std;
    if (!outside.any().item<bool>()) return;
    torch::Tensor fresh = torch::empty_like(t).normal_(0.0, std, gen);
    t.copy_(at::where(outside, fresh, t));
  }
  t.clamp_(-2.0 * std, 2.0 * std);
}

absl::Status Annotate(const absl::Status& status, const std::string& prefix) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

}  // namespace

VitClassifier::VitClassifier(ViTForImageClassification module, torch::Device device)
    : module_(std::move(module)), device_(device) {}

bool VitClassifier::Recognises(const nlohmann::json& config) {
  if (!config.is_object()) return false;
  auto arch = config.find("architectures");
  if (arch != config.end() && arch->is_array() && !arch->empty() && (*arch)[0].is_string()) {
    return (*arch)[0].get<std::string>() == "ViTForImageClassification";
  }
  auto type = config.find("model_type");
  return type != config.end() && type->is_string() && type->get<std::string>() == "vit";
}

absl::StatusOr<std::unique_ptr<VitClassifier>> VitClassifier::Create(
    const ViTConfig& config, const ViTImageProcessorConfig& preprocessor, torch::Device device,
    uint64_t seed) {
  // Validate through the same parsers the loader uses.
  UNL_ASSIGN_OR_RETURN(ViTConfig checked, ViTConfig::FromJson(config.ToJson()));
  UNL_ASSIGN_OR_RETURN(ViTImageProcessorConfig checked_pre,
                       ViTImageProcessorConfig::FromJson(preprocessor.ToJson(), checked));
  return TorchCall("creating model", [&]() -> absl::StatusOr<std::unique_ptr<VitClassifier>> {
    ViTForImageClassification module(checked, checked_pre);
    {
      torch::NoGradGuard no_grad;
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      for (auto& item : module->named_parameters()) {
        const std::string& name = item.key();
        torch::Tensor& p = item.value();
        const bool is_norm = absl::StrContains(name, "layernorm");
        if (is_norm && absl::EndsWith(name, ".weight")) {
          p.fill_(1.0);
        } else if (absl::EndsWith(name, ".bias")) {
          p.zero_();
        } else {
          TruncatedNormal(p, checked.initializer_range, gen);
        }
      }
    }
    module->to(device);
    return std::unique_ptr<VitClassifier>(new VitClassifier(std::move(module), device));
  });
}

absl::StatusOr<std::unique_ptr<VitClassifier>> VitClassifier::Create(const ViTConfig& config,
                                                                     torch::Device device,
                                                                     uint64_t seed) {
  return Create(config, ViTImageProcessorConfig::Default(config), device, seed);
}

absl::StatusOr<std::unique_ptr<VitClassifier>> VitClassifier::Load(const std::string& dir,
                                                                   torch::Device device) {
  const std::string config_path = JoinPath(dir, kConfigFile);
  UNL_ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonFile(config_path));
  if (json.is_object()) {
    auto arch = json.find("architectures");
    if (arch != json.end() && arch->is_array() && !arch->empty() &&
        (*arch)[0] != "ViTForImageClassification") {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path, ": architecture ", (*arch)[0].dump(), " is not ViTForImageClassification"));
    }
  }
  absl::StatusOr<ViTConfig> config = ViTConfig::FromJson(json);
  if (!config.ok()) return Annotate(config.status(), config_path);

  ViTImageProcessorConfig preprocessor = ViTImageProcessorConfig::Default(*config);
  const std::string pre_path = JoinPath(dir, kPreprocessorFile);
  if (std::filesystem::exists(pre_path)) {
    UNL_ASSIGN_OR_RETURN(nlohmann::json pre_json, ReadJsonFile(pre_path));
    absl::StatusOr<ViTImageProcessorConfig> pre =
        ViTImageProcessorConfig::FromJson(pre_json, *config);
    if (!pre.ok()) return Annotate(pre.status(), pre_path);
    preprocessor = *std::move(pre);
  }

  const std::string weights_path = JoinPath(dir, kWeightsFile);
  if (!std::filesystem::exists(weights_path)) {
    return absl::NotFoundError(absl::StrCat("no ", kWeightsFile, " in ", dir));
  }
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(weights_path);
  if (!file.ok()) return Annotate(file.status(), weights_path);
  return TorchCall("loading model", [&]() -> absl::StatusOr<std::unique_ptr<VitClassifier>> {
    ViTForImageClassification module(*config, preprocessor);
    absl::Status copied = CopyWeights(file->tensors, *module);
    if (!copied.ok()) return Annotate(copied, weights_path);
    file->tensors.clear();
    module->eval();
    module->to(device);
    return std::unique_ptr<VitClassifier>(new VitClassifier(std::move(module), device));
  });
}

int64_t VitClassifier::num_parameters() const {
  int64_t n = 0;
  for (const auto& item : module_->named_parameters()) {
    if (!IsLoraFactor(item.key())) n += item.value().numel();
  }
  return n;
}

absl::Status VitClassifier::Save(const std::string& dir) const {
  if (!std::filesystem::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("model directory does not exist: ", dir));
  }
  const torch::ScalarType dtype = StorageDtype(config().torch_dtype);
  absl::StatusOr<std::map<std::string, torch::Tensor>> tensors =
      TorchCall("saving model", [&]() -> absl::StatusOr<std::map<std::string, torch::Tensor>> {
        return MergedWeights(*module_, module_.ptr()->lora_linears(), dtype);
      });
  if (!tensors.ok()) return tensors.status();
  UNL_RETURN_IF_ERROR(
      WriteFileSynced(JoinPath(dir, kConfigFile), config().ToJson().dump(2) + "\n"));
  UNL_RETURN_IF_ERROR(
      WriteFileSynced(JoinPath(dir, kPreprocessorFile), preprocessor().ToJson().dump(2) + "\n"));
  return WriteSafetensors(JoinPath(dir, kWeightsFile), *tensors, {{"format", "pt"}});
}

std::unique_ptr<VitClassifier> VitClassifier::CloneVit(torch::Device device) const {
  ViTForImageClassification copy(config(), preprocessor());
  auto src_linears = module_.ptr()->lora_linears();
  auto dst_linears = copy->lora_linears();
  for (size_t i = 0; i < src_linears.size(); ++i) {
    LoraLinearImpl& src = *src_linears[i].second;
    if (!src.lora_enabled()) continue;
    const int64_t rank = src.lora_a().size(0);
    dst_linears[i].second->EnableLora(rank, src.lora_scale() * static_cast<double>(rank),
                                      src.lora_dropout());
  }
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
  std::unique_ptr<VitClassifier> out(new VitClassifier(std::move(copy), device));
  out->adapter_chain_length_ = adapter_chain_length_;
  return out;
}

absl::StatusOr<std::unique_ptr<Model>> VitClassifier::Clone(torch::Device device) const {
  return TorchCall("cloning model", [&]() -> absl::StatusOr<std::unique_ptr<Model>> {
    return std::unique_ptr<Model>(CloneVit(device));
  });
}

torch::Tensor VitClassifier::ClassifyLogits(const torch::Tensor& images) const {
  c10::InferenceMode guard;
  return module_.ptr()->forward(images.to(device_, torch::kFloat32));
}

torch::Tensor VitClassifier::Features(const torch::Tensor& images) const {
  c10::InferenceMode guard;
  return module_.ptr()->features(images.to(device_, torch::kFloat32));
}

absl::Status VitClassifier::AddForgottenClasses(const std::vector<int64_t>& classes) {
  std::vector<int64_t> merged = config().forgotten_classes;
  for (int64_t c : classes) {
    if (c < 0 || c >= num_classes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("class ", c, " does not exist (the model has ", num_classes(), " classes)"));
    }
    merged.push_back(c);
  }
  std::sort(merged.begin(), merged.end());
  merged.erase(std::unique(merged.begin(), merged.end()), merged.end());
  module_->mutable_config().forgotten_classes = std::move(merged);
  return absl::OkStatus();
}

std::string VitClassifier::class_name(int64_t id) const {
  const auto& labels = config().id2label;
  if (id < 0 || id >= static_cast<int64_t>(labels.size())) return absl::StrCat(id);
  return labels[static_cast<size_t>(id)];
}

ImageSpec VitClassifier::image_spec() const {
  ImageSpec spec;
  spec.channels = config().num_channels;
  spec.height = config().image_size;
  spec.width = config().image_size;
  return spec;
}

}  // namespace unlearning::core
