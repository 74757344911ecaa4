// CausalLm: loading, saving, cloning and decoding around LlamaForCausalLM.
#include "core/models/causal_lm.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
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
    item.value().copy_(src);  // upcasts bf16/f16 to float32
  }
  return absl::OkStatus();
}

// Draws u in [0, 1) from 53 random bits (portable, unlike
// std::uniform_real_distribution).
double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

//   logits: [V] float32. Greedy argmax when temperature == 0, else nucleus sampling.
int64_t PickToken(const torch::Tensor& logits, const GenerateOptions& options,
                  std::mt19937_64& rng) {
  if (options.temperature <= 0.0) return logits.argmax().item<int64_t>();
  torch::Tensor probs =
      at::softmax(logits.to(torch::kCPU, torch::kFloat64) / options.temperature, -1).contiguous();
  const double* p = probs.data_ptr<double>();
  const int64_t v = probs.numel();
  std::vector<int64_t> order(v);
  for (int64_t i = 0; i < v; ++i) order[i] = i;
  // Descending probability; ties by id so the order is deterministic.
  std::sort(order.begin(), order.end(),
            [p](int64_t a, int64_t b) { return p[a] != p[b] ? p[a] > p[b] : a < b; });
  // Nucleus: the smallest prefix whose mass reaches top_p (always at least one
  // token).
  double kept_mass = 0.0;
  int64_t kept = 0;
  while (kept < v && (kept == 0 || kept_mass < options.top_p)) kept_mass += p[order[kept++]];
  const double u = Uniform01(rng) * kept_mass;
  double acc = 0.0;
  for (int64_t i = 0; i < kept; ++i) {
    acc += p[order[i]];
    if (u < acc) return order[i];
  }
  return order[kept - 1];
}

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
  const std::string config_path = JoinPath(dir, kConfigFile);
  UNL_ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonFile(config_path));
  if (json.is_object()) {
    auto arch = json.find("architectures");
    if (arch != json.end() && arch->is_array() && !arch->empty() &&
        (*arch)[0] != "LlamaForCausalLM") {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path, ": architecture ", (*arch)[0].dump(), " is not LlamaForCausalLM"));
    }
  }
  absl::StatusOr<LlamaConfig> config = LlamaConfig::FromJson(json);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(config_path, ": ", config.status().message()));
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
    UNL_RETURN_IF_ERROR(CopyWeights(weights, *module));
    weights.clear();
    module->to(device);
    std::shared_ptr<const Tokenizer> shared(std::move(tokenizer));
    return std::unique_ptr<CausalLm>(new CausalLm(std::move(module), std::move(shared), device));
  });
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

absl::StatusOr<std::unique_ptr<Model>> CausalLm::Clone(torch::Device device) const {
  return TorchCall("cloning model", [&]() -> absl::StatusOr<std::unique_ptr<Model>> {
    return std::unique_ptr<Model>(CloneLm(device));
  });
}

torch::Tensor CausalLm::Logits(const torch::Tensor& input_ids) const {
  c10::InferenceMode guard;
  return module_.ptr()->forward(input_ids.to(device_));
}

absl::StatusOr<std::vector<int64_t>> CausalLm::Generate(
    const std::vector<int64_t>& prompt_ids, const GenerateOptions& options,
    const std::function<bool(int64_t)>& on_token) const {
  const int64_t vocab = config().vocab_size;
  if (prompt_ids.empty()) return absl::InvalidArgumentError("generate: empty prompt");
  for (int64_t id : prompt_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("generate: prompt token ", id, " outside [0, ", vocab, ")"));
    }
  }
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError("generate: max_new_tokens must be >= 0");
  }
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature)) {
    return absl::InvalidArgumentError("generate: temperature must be a finite number >= 0");
  }
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) {
    return absl::InvalidArgumentError("generate: top_p must be in (0, 1]");
  }
  return TorchCall("generate", [&]() -> absl::StatusOr<std::vector<int64_t>> {
    c10::InferenceMode guard;
    std::vector<int64_t> generated;
    if (options.max_new_tokens == 0) return generated;
    LlamaForCausalLMImpl& module = *module_.ptr();
    std::mt19937_64 rng(options.seed);
    KvCache cache;
    torch::Tensor ids =
        torch::tensor(prompt_ids, torch::kInt64).view({1, -1}).to(device_);  // [1, P]
    torch::Tensor logits = module.forward_cached(ids, &cache)[0][-1];        // [V]
    const int64_t eos = config().eos_token_id;
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      const int64_t next = PickToken(logits, options, rng);
      if (options.stop_at_eos && next == eos) break;
      generated.push_back(next);
      if (on_token && !on_token(next)) break;
      if (step + 1 == options.max_new_tokens) break;
      torch::Tensor step_ids =
          torch::full({1, 1}, next, torch::TensorOptions().dtype(torch::kInt64).device(device_));
      logits = module.forward_cached(step_ids, &cache)[0][-1];
    }
    return generated;
  });
}

}  // namespace unlearning::core
