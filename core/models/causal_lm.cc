// CausalLm: loading, saving, cloning and decoding around LlamaForCausalLM.
#include "core/models/causal_lm.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
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
constexpr char kGenerationConfigFile[] = "generation_config.json";
constexpr char kWeightsIndexFile[] = "model.safetensors.index.json";

// Reads model.safetensors, or every shard named by
// model.safetensors.index.json.
absl::StatusOr<std::map<std::string, torch::Tensor>> ReadWeights(const std::string& dir) {
  const std::string single = JoinPath(dir, kWeightsFile);
  if (std::filesystem::exists(single)) {
    UNL_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(single));
    return std::move(file.tensors);
  }
  const std::string index_path = JoinPath(dir, kWeightsIndexFile);
  if (!std::filesystem::exists(index_path)) {
    return absl::NotFoundError(absl::StrCat("no ", kWeightsFile, " in ", dir));
  }
  UNL_ASSIGN_OR_RETURN(nlohmann::json index, ReadJsonFile(index_path));
  auto map = index.is_object() ? index.find("weight_map") : index.end();
  if (map == index.end() || !map->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": no \"weight_map\" object"));
  }
  std::set<std::string> shards;
  for (const auto& shard : *map) {
    const std::string name = shard.is_string() ? shard.get<std::string>() : "";
    if (name.empty() || name.find('/') != std::string::npos || name == "..") {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": bad shard ", shard.dump()));
    }
    shards.insert(name);
  }
  std::map<std::string, torch::Tensor> tensors;
  for (const std::string& shard : shards) {
    UNL_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(JoinPath(dir, shard)));
    for (auto& [name, tensor] : file.tensors) tensors[name] = std::move(tensor);
  }
  return tensors;
}

// Copies `weights` into the module's parameters (not LoRA factors), checking
// presence, dtype and shape. Tensors the module does not have (e.g. rotary
// inv_freq) are ignored.
absl::Status CopyWeights(const std::map<std::string, torch::Tensor>& weights,
                         LlamaForCausalLMImpl& module) {
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
    item.value().copy_(src);  // upcasts bf16/f16 to float32 (unless the module is bfloat16)
  }
  return absl::OkStatus();
}

// Whether `device` runs a bfloat16 matmul (a tiny probe; LibTorch throws where it cannot).
bool SupportsBfloat16Matmul(torch::Device device) {
  absl::StatusOr<bool> ok = TorchCall("bfloat16 probe", [&]() -> absl::StatusOr<bool> {
    torch::Tensor a =
        torch::ones({2, 2}, torch::TensorOptions().dtype(torch::kBFloat16).device(device));
    return at::matmul(a, a).sum().item<float>() == 8.0f;
  });
  return ok.ok() && *ok;
}

// The decode state of CausalLm: a KvCache stepped through forward_cached.
class CausalLmDecodeState : public DecodeState {
 public:
  CausalLmDecodeState(const CausalLm* lm, int64_t batch) : lm_(lm), batch_(batch) {}

  torch::Tensor Step(const torch::Tensor& ids) override {
    return StepAll(ids).select(1, -1);  // [B, V]
  }
  torch::Tensor StepAll(const torch::Tensor& ids) override {
    TORCH_CHECK(ids.dim() == 2 && ids.size(0) == batch_ && ids.size(1) >= 1,
                "decode step: ids must be [", batch_, ", T >= 1], got ", ids.sizes());
    c10::InferenceMode guard;
    return lm_->module().ptr()->forward_cached(ids.to(lm_->device(), torch::kInt64),
                                               &cache_);  // [B, T_new, V]
  }
  bool SelectRows(const torch::Tensor& rows) override {
    TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == torch::kInt64,
                "SelectRows: rows must be "
                "a 1-d int64 tensor, got ",
                rows.sizes(), " ", rows.scalar_type());
    TORCH_CHECK(rows.numel() == 0 ||
                    (rows.min().item<int64_t>() >= 0 && rows.max().item<int64_t>() < batch_),
                "SelectRows: a row outside [0, ", batch_, ")");
    c10::InferenceMode guard;
    const torch::Tensor index = rows.to(lm_->device());
    for (torch::Tensor& k : cache_.keys) {
      if (k.defined()) k = k.index_select(0, index);
    }
    for (torch::Tensor& v : cache_.values) {
      if (v.defined()) v = v.index_select(0, index);
    }
    if (cache_.valid.defined()) cache_.valid = cache_.valid.index_select(0, index);
    batch_ = rows.numel();
    return true;
  }
  bool supports_padding() const override { return true; }
  torch::Tensor StepPadded(const torch::Tensor& ids, const torch::Tensor& valid) override {
    TORCH_CHECK(ids.dim() == 2 && ids.size(0) == batch_ && ids.size(1) >= 1,
                "decode step: ids must be [", batch_, ", T >= 1], got ", ids.sizes());
    TORCH_CHECK(valid.sizes() == ids.sizes(), "decode step: valid must be ", ids.sizes(), ", got ",
                valid.sizes());
    c10::InferenceMode guard;
    torch::Tensor logits = lm_->module().ptr()->forward_cached(ids.to(lm_->device(), torch::kInt64),
                                                               &cache_, valid);  // [B, T_new, V]
    return logits.select(1, -1);                                                 // [B, V]
  }
  int64_t length() const override { return cache_.length; }
  int64_t batch_size() const override { return batch_; }

 private:
  const CausalLm* lm_;
  int64_t batch_;
  KvCache cache_;
};

}  // namespace

CausalLm::CausalLm(LlamaForCausalLM module, std::shared_ptr<const Tokenizer> tokenizer,
                   torch::Device device)
    : module_(std::move(module)), tokenizer_(std::move(tokenizer)), device_(device) {}

std::unique_ptr<CausalLm> CausalLm::Create(const LlamaConfig& config,
                                           std::unique_ptr<Tokenizer> tokenizer,
                                           torch::Device device, uint64_t seed) {
  LlamaForCausalLM module(config);
  {
    torch::NoGradGuard no_grad;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (auto& item : module->named_parameters()) {
      if (absl::EndsWith(item.key(), "norm.weight")) {
        item.value().fill_(1.0);
      } else {
        item.value().normal_(0.0, 0.02, gen);
      }
    }
  }
  module->to(device);
  std::shared_ptr<const Tokenizer> shared(std::move(tokenizer));
  if (shared == nullptr) shared = std::make_shared<ByteTokenizer>();
  return std::unique_ptr<CausalLm>(new CausalLm(std::move(module), std::move(shared), device));
}

absl::StatusOr<std::unique_ptr<CausalLm>> CausalLm::Load(const std::string& dir,
                                                         torch::Device device) {
  return Load(dir, device, LoadOptions{});
}

absl::StatusOr<std::unique_ptr<CausalLm>> CausalLm::Load(const std::string& dir,
                                                         torch::Device device,
                                                         const LoadOptions& options) {
  const std::string config_path = JoinPath(dir, kConfigFile);
  UNL_ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonFile(config_path));
  absl::StatusOr<LlamaConfig> config = LlamaConfig::FromJson(json);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(config_path, ": ", config.status().message()));
  }
  const std::string generation_path = JoinPath(dir, kGenerationConfigFile);
  if (std::filesystem::exists(generation_path)) {
    UNL_ASSIGN_OR_RETURN(nlohmann::json generation, ReadJsonFile(generation_path));
    UNL_RETURN_IF_ERROR(config->SetGenerationConfig(generation));
  }
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(dir));
  if (tokenizer->vocab_size() > config->vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer vocabulary (", tokenizer->vocab_size(),
                     ") exceeds the model's vocab_size (", config->vocab_size, ")"));
  }
  UNL_ASSIGN_OR_RETURN(auto weights, ReadWeights(dir));
  return TorchCall("loading model", [&]() -> absl::StatusOr<std::unique_ptr<CausalLm>> {
    LlamaForCausalLM module(*config);
    if (options.keep_bfloat16 && config->torch_dtype == "bfloat16" &&
        SupportsBfloat16Matmul(device)) {
      module->to(torch::kBFloat16);  // CopyWeights then copies the stored bf16 values exactly
    }
    UNL_RETURN_IF_ERROR(CopyWeights(weights, *module));
    weights.clear();
    module->to(device);
    std::shared_ptr<const Tokenizer> shared(std::move(tokenizer));
    return std::unique_ptr<CausalLm>(new CausalLm(std::move(module), std::move(shared), device));
  });
}

bool CausalLm::IsStopToken(int64_t id) const {
  for (int64_t eos : config().extra_eos_token_ids) {
    if (id == eos) return true;
  }
  for (int64_t eos : config().generation_eos_token_ids) {
    if (id == eos) return true;
  }
  return LanguageModel::IsStopToken(id);
}

torch::ScalarType CausalLm::weight_dtype() const {
  return module_->parameters().front().scalar_type();
}

int64_t CausalLm::num_parameters() const {
  int64_t n = 0;
  for (const torch::Tensor& p : module_->parameters()) n += p.numel();
  return n;
}

absl::Status CausalLm::Save(const std::string& dir) const {
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
  UNL_RETURN_IF_ERROR(WriteSafetensors(JoinPath(dir, kWeightsFile), *tensors, {{"format", "pt"}}));
  if (!config().generation_config.is_null()) {
    UNL_RETURN_IF_ERROR(WriteFileSynced(JoinPath(dir, kGenerationConfigFile),
                                        config().generation_config.dump(2) + "\n"));
  }
  return tokenizer_->Save(dir);
}

std::unique_ptr<CausalLm> CausalLm::CloneLm(torch::Device device) const {
  LlamaForCausalLM copy(config());
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
  return std::unique_ptr<CausalLm>(new CausalLm(std::move(copy), tokenizer_, device));
}

std::unique_ptr<CausalLm> CausalLm::Truncated(int64_t num_layers) const {
  TORCH_CHECK(num_layers >= 1 && num_layers <= config().num_hidden_layers,
              "Truncated: num_layers must be in [1, ", config().num_hidden_layers, "], got ",
              num_layers);
  LlamaConfig truncated = config();
  truncated.num_hidden_layers = num_layers;
  if (!truncated.layer_types.empty()) truncated.layer_types.resize(num_layers);
  LlamaForCausalLM copy(truncated);
  copy->to(device_);
  {
    torch::NoGradGuard no_grad;
    auto src_params = module_->named_parameters();
    for (auto& item : copy->named_parameters()) {
      const torch::Tensor* src = src_params.find(item.key());
      TORCH_CHECK(src != nullptr, "Truncated: no parameter ", item.key());
      item.value().set_data(src->detach());  // shares the storage
      item.value().set_requires_grad(false);
    }
  }
  copy->eval();
  return std::unique_ptr<CausalLm>(new CausalLm(std::move(copy), tokenizer_, device_));
}

absl::StatusOr<std::unique_ptr<Model>> CausalLm::Clone(torch::Device device) const {
  return TorchCall("cloning model", [&]() -> absl::StatusOr<std::unique_ptr<Model>> {
    return std::unique_ptr<Model>(CloneLm(device));
  });
}

torch::Tensor CausalLm::Logits(const torch::Tensor& input_ids) const {
  c10::InferenceMode guard;
  return module_.ptr()->forward(input_ids.to(device_));
}

std::vector<torch::Tensor> CausalLm::HiddenStates(const torch::Tensor& input_ids) const {
  c10::InferenceMode guard;
  return module_.ptr()->hidden_states(input_ids.to(device_));
}

std::unique_ptr<DecodeState> CausalLm::NewDecodeState(int64_t batch) const {
  return std::make_unique<CausalLmDecodeState>(this, batch);
}

absl::StatusOr<std::vector<int64_t>> CausalLm::Generate(
    const std::vector<int64_t>& prompt_ids, const GenerateOptions& options,
    const std::function<bool(int64_t)>& on_token) const {
  UNL_ASSIGN_OR_RETURN(GeneratedTokens out, GenerateTokens(*this, prompt_ids, options, on_token));
  return std::move(out.ids);
}

}  // namespace unlearning::core
