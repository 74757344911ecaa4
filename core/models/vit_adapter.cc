#include "core/models/vit_adapter.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/io/files.h"
#include "core/io/safetensors.h"

namespace unlearning::core {
namespace {

constexpr const char* kTargets[] = {"intermediate.dense", "output.dense"};

std::string FactorName(const std::string& linear, const char* factor) {
  return absl::StrCat(linear, ".", factor, ".weight");
}

absl::StatusOr<std::vector<int64_t>> ClassList(const nlohmann::json& json, const char* key) {
  std::vector<int64_t> out;
  auto it = json.find(key);
  if (it == json.end()) return out;
  if (!it->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(key, " must be an array of class ids"));
  }
  for (const auto& v : *it) {
    if (!v.is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(key, " must be an array of class ids"));
    }
    out.push_back(v.get<int64_t>());
  }
  return out;
}

}  // namespace

nlohmann::json VitAdapterConfig::ToJson() const {
  return {{"peft_type", "LORA"},
          {"task_type", "IMAGE_CLASSIFICATION"},
          {"r", rank},
          {"lora_alpha", lora_alpha},
          {"lora_dropout", 0.0},
          {"bias", "none"},
          {"target_modules", {kTargets[0], kTargets[1]}},
          {"unlearning_forget_classes", forget_classes},
          {"unlearning_forgotten_classes", forgotten_classes}};
}

absl::StatusOr<VitAdapterConfig> VitAdapterConfig::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("adapter config must be an object");
  VitAdapterConfig c;
  if (json.value("peft_type", std::string()) != "LORA") {
    return absl::InvalidArgumentError("adapter config: peft_type must be \"LORA\"");
  }
  auto r = json.find("r");
  if (r == json.end() || !r->is_number_integer() || r->get<int64_t>() < 1) {
    return absl::InvalidArgumentError("adapter config: r must be an integer >= 1");
  }
  c.rank = r->get<int64_t>();
  auto alpha = json.find("lora_alpha");
  if (alpha == json.end() || !alpha->is_number() || !(alpha->get<double>() > 0.0)) {
    return absl::InvalidArgumentError("adapter config: lora_alpha must be a number > 0");
  }
  c.lora_alpha = alpha->get<double>();
  auto targets = json.find("target_modules");
  if (targets != json.end()) {
    const std::set<std::string> ffn(std::begin(kTargets), std::end(kTargets));
    if (!targets->is_array()) {
      return absl::InvalidArgumentError("adapter config: target_modules must be an array");
    }
    for (const auto& t : *targets) {
      if (!t.is_string() || ffn.count(t.get<std::string>()) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "adapter config: target_modules ", targets->dump(),
            " not supported (only the FFN linears intermediate.dense and output.dense)"));
      }
    }
  }
  UNL_ASSIGN_OR_RETURN(c.forget_classes, ClassList(json, "unlearning_forget_classes"));
  UNL_ASSIGN_OR_RETURN(c.forgotten_classes, ClassList(json, "unlearning_forgotten_classes"));
  return c;
}

void ResetFfnAdapters(VitClassifier& vit, int64_t rank, double alpha) {
  auto module = vit.module();
  for (auto& [name, linear] : module->lora_linears()) linear->MergeLora();
  for (torch::Tensor& p : module->parameters()) p.set_requires_grad(false);
  for (auto& [name, linear] : module->ffn_linears()) linear->EnableLora(rank, alpha);
}

std::map<std::string, torch::Tensor> VitAdapterTensors(const VitClassifier& vit) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, linear] : vit.module().ptr()->ffn_linears()) {
    if (!linear->lora_enabled()) continue;
    out[FactorName(name, "lora_A")] =
        linear->lora_a().detach().to(torch::kCPU, torch::kFloat32).clone();
    out[FactorName(name, "lora_B")] =
        linear->lora_b().detach().to(torch::kCPU, torch::kFloat32).clone();
  }
  return out;
}

absl::Status WriteVitAdapter(const std::string& dir,
                             const std::map<std::string, torch::Tensor>& tensors,
                             const VitAdapterConfig& config) {
  if (!std::filesystem::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("adapter directory does not exist: ", dir));
  }
  UNL_RETURN_IF_ERROR(
      WriteSafetensors(JoinPath(dir, kVitAdapterWeightsFile), tensors, {{"format", "pt"}}));
  return WriteFileSynced(JoinPath(dir, kVitAdapterConfigFile), config.ToJson().dump(2) + "\n");
}

absl::StatusOr<std::unique_ptr<VitClassifier>> LoadVitAdapter(const std::string& dir,
                                                              const VitClassifier& parent,
                                                              torch::Device device) {
  const std::string config_path = JoinPath(dir, kVitAdapterConfigFile);
  const std::string weights_path = JoinPath(dir, kVitAdapterWeightsFile);
  UNL_ASSIGN_OR_RETURN(nlohmann::json config_json, ReadJsonFile(config_path));
  absl::StatusOr<VitAdapterConfig> config = VitAdapterConfig::FromJson(config_json);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": ", config.status().message()));
  }
  if (!std::filesystem::exists(weights_path)) {
    return absl::NotFoundError(absl::StrCat("no ", kVitAdapterWeightsFile, " in ", dir));
  }
  UNL_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(weights_path));
  return TorchCall("loading adapter", [&]() -> absl::StatusOr<std::unique_ptr<VitClassifier>> {
    std::unique_ptr<VitClassifier> vit = parent.CloneVit(device);
    ResetFfnAdapters(*vit, config->rank, config->lora_alpha);
    std::set<std::string> unused;
    for (const auto& item : file.tensors) unused.insert(item.first);
    torch::NoGradGuard no_grad;
    for (auto& [name, linear] : vit->module()->ffn_linears()) {
      for (auto [factor, target] :
           {std::pair<const char*, torch::Tensor*>{"lora_A", &linear->lora_a()},
            {"lora_B", &linear->lora_b()}}) {
        const std::string key = FactorName(name, factor);
        auto it = file.tensors.find(key);
        if (it == file.tensors.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat(weights_path, ": tensor ", key, " is missing"));
        }
        if (it->second.sizes() != target->sizes()) {
          return absl::InvalidArgumentError(
              absl::StrCat(weights_path, ": tensor ", key, " has shape ",
                           c10::str(it->second.sizes()), ", expected ", c10::str(target->sizes())));
        }
        target->copy_(it->second.to(torch::kFloat32));
        unused.erase(key);
      }
    }
    if (!unused.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": unexpected tensor ", *unused.begin()));
    }
    for (torch::Tensor& p : vit->module()->parameters()) p.set_requires_grad(false);
    vit->module()->eval();
    UNL_RETURN_IF_ERROR(vit->AddForgottenClasses(config->forgotten_classes));
    vit->set_adapter_chain_length(parent.adapter_chain_length() + 1);
    return vit;
  });
}

}  // namespace unlearning::core
