// LlamaConfig <-> Hugging Face config.json.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "core/common/status_macros.h"
#include "core/models/causal_lm.h"

namespace unlearning::core {
namespace {

absl::Status BadKey(const std::string& key, const nlohmann::json& value, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: \"", key, "\" = ", value.dump(), ": ", why));
}

// Reads an optional integer key; null keeps the default.
absl::Status ReadInt(const nlohmann::json& json, const std::string& key, int64_t* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return BadKey(key, *it, "out of range");
    }
    *out = static_cast<int64_t>(it->get<uint64_t>());
    return absl::OkStatus();
  }
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
    return absl::OkStatus();
  }
  return BadKey(key, *it, "expected an integer");
}

// Token ids may be an integer, a list of integers (the first is used) or null.
absl::Status ReadTokenId(const nlohmann::json& json, const std::string& key, int64_t* out) {
  auto it = json.find(key);
  if (it != json.end() && it->is_array()) {
    if (it->empty() || !(*it)[0].is_number_integer()) {
      return BadKey(key, *it, "expected an integer or a non-empty list of integers");
    }
    *out = (*it)[0].get<int64_t>();
    return absl::OkStatus();
  }
  return ReadInt(json, key, out);
}

absl::Status ReadDouble(const nlohmann::json& json, const std::string& key, double* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return BadKey(key, *it, "expected a number");
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const nlohmann::json& json, const std::string& key, bool* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return BadKey(key, *it, "expected a boolean");
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status Positive(const std::string& key, int64_t value) {
  if (value <= 0) return BadKey(key, value, "must be positive");
  return absl::OkStatus();
}

constexpr const char* kModelTypes[][2] = {{"llama", "LlamaForCausalLM"},
                                          {"qwen2", "Qwen2ForCausalLM"},
                                          {"mistral", "MistralForCausalLM"}};

// "model_type" and "architectures"[0] agree on one of kModelTypes; a missing model_type is taken
// from the architecture, and both missing mean Llama.
absl::Status ReadModelType(const nlohmann::json& json, std::string* out) {
  std::string from_type;
  if (auto it = json.find("model_type"); it != json.end() && !it->is_null()) {
    if (!it->is_string()) return BadKey("model_type", *it, "expected a string");
    from_type = it->get<std::string>();
    bool known = false;
    for (const auto& row : kModelTypes) known = known || from_type == row[0];
    if (!known) return BadKey("model_type", *it, "supported: \"llama\", \"qwen2\", \"mistral\"");
  }
  std::string from_arch;
  if (auto it = json.find("architectures"); it != json.end() && !it->is_null()) {
    if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
      return BadKey("architectures", *it, "expected a non-empty list of strings");
    }
    const std::string arch = (*it)[0].get<std::string>();
    for (const auto& row : kModelTypes) {
      if (arch == row[1]) from_arch = row[0];
    }
    if (from_arch.empty()) {
      return BadKey("architectures", *it,
                    "supported: LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM");
    }
    if (!from_type.empty() && from_type != from_arch) {
      return BadKey("architectures", *it,
                    absl::StrCat("does not match \"model_type\" = \"", from_type, "\""));
    }
  }
  *out = !from_type.empty() ? from_type : !from_arch.empty() ? from_arch : "llama";
  return absl::OkStatus();
}

// rope_scaling (or transformers 5's rope_parameters): null, or {"rope_type" (older configs:
// "type"): "default" | "linear" | "llama3", ...} as transformers' ROPE_INIT_FUNCTIONS reads it.
absl::Status ReadRopeScaling(const nlohmann::json& json, const std::string& key,
                             int64_t max_position_embeddings, RopeScaling* out,
                             double* rope_theta) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  const nlohmann::json& rope = *it;
  if (!rope.is_object()) return BadKey(key, rope, "expected an object or null");
  const std::string type_key = key + ".rope_type";
  auto type_it = rope.find("rope_type");
  if (type_it == rope.end() || type_it->is_null()) type_it = rope.find("type");
  if (type_it == rope.end() || type_it->is_null()) {
    return BadKey(type_key, rope, "missing (expected \"linear\" or \"llama3\")");
  }
  if (!type_it->is_string()) return BadKey(type_key, *type_it, "expected a string");
  const std::string type = type_it->get<std::string>();
  if (key == "rope_parameters") {
    UNL_RETURN_IF_ERROR(ReadDouble(rope, "rope_theta", rope_theta));
  }
  if (type == "default") return absl::OkStatus();
  if (type != "linear" && type != "llama3") {
    return BadKey(type_key, *type_it, "only \"linear\" and \"llama3\" RoPE scaling are supported");
  }
  RopeScaling r;
  r.type = type == "linear" ? RopeScaling::Type::kLinear : RopeScaling::Type::kLlama3;
  auto number = [&](const char* name, double* value) -> absl::Status {
    auto f = rope.find(name);
    if (f == rope.end() || f->is_null()) {
      return BadKey(key + "." + name, nullptr, absl::StrCat("required for \"", type, "\""));
    }
    if (!f->is_number()) return BadKey(key + "." + name, *f, "expected a number");
    *value = f->get<double>();
    return absl::OkStatus();
  };
  UNL_RETURN_IF_ERROR(number("factor", &r.factor));
  if (!(r.factor >= 1.0)) return BadKey(key + ".factor", r.factor, "must be >= 1");
  if (r.type == RopeScaling::Type::kLlama3) {
    UNL_RETURN_IF_ERROR(number("low_freq_factor", &r.low_freq_factor));
    UNL_RETURN_IF_ERROR(number("high_freq_factor", &r.high_freq_factor));
    if (!(r.low_freq_factor > 0.0)) {
      return BadKey(key + ".low_freq_factor", r.low_freq_factor, "must be positive");
    }
    if (!(r.high_freq_factor > r.low_freq_factor)) {
      return BadKey(key + ".high_freq_factor", r.high_freq_factor,
                    absl::StrCat("must be greater than low_freq_factor ", r.low_freq_factor));
    }
    // transformers falls back to max_position_embeddings.
    r.original_max_position_embeddings = max_position_embeddings;
    if (!ReadInt(rope, "original_max_position_embeddings", &r.original_max_position_embeddings)
             .ok()) {
      return BadKey(key + ".original_max_position_embeddings",
                    rope.at("original_max_position_embeddings"), "expected an integer");
    }
    UNL_RETURN_IF_ERROR(
        Positive(key + ".original_max_position_embeddings", r.original_max_position_embeddings));
  }
  *out = r;
  return absl::OkStatus();
}

// Qwen2's "layer_types": one "full_attention" / "sliding_attention" per layer.
absl::Status ReadLayerTypes(const nlohmann::json& json, int64_t num_layers,
                            std::vector<std::string>* out) {
  auto it = json.find("layer_types");
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array() || static_cast<int64_t>(it->size()) != num_layers) {
    return BadKey("layer_types", *it,
                  absl::StrCat("expected a list of ", num_layers, " layer types"));
  }
  std::vector<std::string> types;
  for (const auto& t : *it) {
    if (!t.is_string() ||
        (t.get<std::string>() != "full_attention" && t.get<std::string>() != "sliding_attention")) {
      return BadKey("layer_types", *it,
                    "each entry must be \"full_attention\" or \"sliding_attention\"");
    }
    types.push_back(t.get<std::string>());
  }
  *out = std::move(types);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LlamaConfig> LlamaConfig::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("config.json: not a JSON object");
  }
  LlamaConfig c;
  UNL_RETURN_IF_ERROR(ReadModelType(json, &c.model_type));
  // num_key_value_heads defaults to num_attention_heads (plain multi-head
  // attention) in HF.
  bool has_kv_heads =
      json.contains("num_key_value_heads") && !json.at("num_key_value_heads").is_null();
  UNL_RETURN_IF_ERROR(ReadInt(json, "vocab_size", &c.vocab_size));
  UNL_RETURN_IF_ERROR(ReadInt(json, "hidden_size", &c.hidden_size));
  UNL_RETURN_IF_ERROR(ReadInt(json, "intermediate_size", &c.intermediate_size));
  UNL_RETURN_IF_ERROR(ReadInt(json, "num_hidden_layers", &c.num_hidden_layers));
  UNL_RETURN_IF_ERROR(ReadInt(json, "num_attention_heads", &c.num_attention_heads));
  if (has_kv_heads) {
    UNL_RETURN_IF_ERROR(ReadInt(json, "num_key_value_heads", &c.num_key_value_heads));
  } else {
    c.num_key_value_heads = c.num_attention_heads;
  }
  UNL_RETURN_IF_ERROR(ReadInt(json, "max_position_embeddings", &c.max_position_embeddings));
  UNL_RETURN_IF_ERROR(ReadDouble(json, "rms_norm_eps", &c.rms_norm_eps));
  UNL_RETURN_IF_ERROR(ReadDouble(json, "rope_theta", &c.rope_theta));
  UNL_RETURN_IF_ERROR(ReadBool(json, "tie_word_embeddings", &c.tie_word_embeddings));
  UNL_RETURN_IF_ERROR(ReadTokenId(json, "bos_token_id", &c.bos_token_id));
  UNL_RETURN_IF_ERROR(ReadTokenId(json, "eos_token_id", &c.eos_token_id));
  if (auto it = json.find("eos_token_id"); it != json.end() && it->is_array()) {
    for (size_t i = 1; i < it->size(); ++i) {
      if (!(*it)[i].is_number_integer()) {
        return BadKey("eos_token_id", *it, "expected an integer or a non-empty list of integers");
      }
      c.extra_eos_token_ids.push_back((*it)[i].get<int64_t>());
    }
  }
  UNL_RETURN_IF_ERROR(ReadTokenId(json, "pad_token_id", &c.pad_token_id));
  // Newer transformers write "dtype", older ones "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"}) {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    if (!it->is_string()) return BadKey(key, *it, "expected a string");
    std::string dtype = it->get<std::string>();
    if (dtype == "float" || dtype == "fp32") dtype = "float32";
    if (dtype == "bf16") dtype = "bfloat16";
    if (dtype == "half" || dtype == "fp16") dtype = "float16";
    if (dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
      return BadKey(key, *it, "supported: float32, bfloat16, float16");
    }
    c.torch_dtype = dtype;
    break;
  }

  // Features of the HF Llama family this implementation does not have.
  if (auto it = json.find("hidden_act"); it != json.end() && !it->is_null() &&
                                         (!it->is_string() || it->get<std::string>() != "silu")) {
    return BadKey("hidden_act", *it, "only \"silu\" is supported");
  }
  if (json.contains("rope_scaling") && !json.at("rope_scaling").is_null()) {
    UNL_RETURN_IF_ERROR(ReadRopeScaling(json, "rope_scaling", c.max_position_embeddings,
                                        &c.rope_scaling, &c.rope_theta));
  } else {
    UNL_RETURN_IF_ERROR(ReadRopeScaling(json, "rope_parameters", c.max_position_embeddings,
                                        &c.rope_scaling, &c.rope_theta));
  }
  if (c.model_type == "llama") {
    // Qwen2 and Mistral have no such keys (transformers ignores them there).
    UNL_RETURN_IF_ERROR(ReadBool(json, "attention_bias", &c.attention_bias));
    UNL_RETURN_IF_ERROR(ReadBool(json, "mlp_bias", &c.mlp_bias));
  }
  if (c.model_type == "qwen2") {
    c.sliding_window = 4096;  // Qwen2Config's default
    UNL_RETURN_IF_ERROR(ReadBool(json, "use_sliding_window", &c.use_sliding_window));
    UNL_RETURN_IF_ERROR(ReadInt(json, "max_window_layers", &c.max_window_layers));
    if (c.max_window_layers < 0) {
      return BadKey("max_window_layers", c.max_window_layers, "must be >= 0");
    }
    UNL_RETURN_IF_ERROR(ReadLayerTypes(json, c.num_hidden_layers, &c.layer_types));
  }
  if (c.model_type == "qwen2" || c.model_type == "mistral") {
    if (auto it = json.find("sliding_window"); it != json.end()) {
      if (it->is_null()) {
        c.sliding_window = 0;
      } else {
        UNL_RETURN_IF_ERROR(ReadInt(json, "sliding_window", &c.sliding_window));
        if (c.sliding_window <= 0) {
          return BadKey("sliding_window", *it, "must be a positive integer or null");
        }
      }
    }
  }

  UNL_RETURN_IF_ERROR(Positive("vocab_size", c.vocab_size));
  UNL_RETURN_IF_ERROR(Positive("hidden_size", c.hidden_size));
  UNL_RETURN_IF_ERROR(Positive("intermediate_size", c.intermediate_size));
  UNL_RETURN_IF_ERROR(Positive("num_hidden_layers", c.num_hidden_layers));
  UNL_RETURN_IF_ERROR(Positive("num_attention_heads", c.num_attention_heads));
  UNL_RETURN_IF_ERROR(Positive("num_key_value_heads", c.num_key_value_heads));
  UNL_RETURN_IF_ERROR(Positive("max_position_embeddings", c.max_position_embeddings));
  if (c.hidden_size % c.num_attention_heads != 0) {
    return BadKey("num_attention_heads", c.num_attention_heads,
                  absl::StrCat("does not divide hidden_size ", c.hidden_size));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return BadKey("num_key_value_heads", c.num_key_value_heads,
                  absl::StrCat("does not divide num_attention_heads ", c.num_attention_heads));
  }
  if (c.head_dim() % 2 != 0) {
    return BadKey("hidden_size", c.hidden_size,
                  absl::StrCat("head dimension ", c.head_dim(), " must be even for RoPE"));
  }
  if (auto it = json.find("head_dim"); it != json.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() != c.head_dim()) {
      return BadKey(
          "head_dim", *it,
          absl::StrCat("only hidden_size / num_attention_heads = ", c.head_dim(), " is supported"));
    }
  }
  if (!(c.rms_norm_eps > 0.0)) return BadKey("rms_norm_eps", c.rms_norm_eps, "must be positive");
  if (!(c.rope_theta > 0.0)) return BadKey("rope_theta", c.rope_theta, "must be positive");
  for (auto [key, id] : {std::pair<const char*, int64_t>{"bos_token_id", c.bos_token_id},
                         {"eos_token_id", c.eos_token_id},
                         {"pad_token_id", c.pad_token_id}}) {
    if (id < -1 || id >= c.vocab_size) {
      return BadKey(key, id, absl::StrCat("outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  for (int64_t id : c.extra_eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      return BadKey("eos_token_id", id,
                    absl::StrCat("outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  return c;
}

std::string LlamaConfig::architecture() const {
  for (const auto& row : kModelTypes) {
    if (model_type == row[0]) return row[1];
  }
  return "LlamaForCausalLM";
}

int64_t LlamaConfig::LayerWindow(int64_t layer) const {
  if (sliding_window <= 0) return 0;
  if (model_type == "mistral") return sliding_window;
  if (model_type != "qwen2" || !use_sliding_window) return 0;
  // transformers' Qwen2Config: layer_types, or "sliding_attention" for layers >= max_window_layers.
  const bool sliding = !layer_types.empty()
                           ? layer_types[static_cast<size_t>(layer)] == "sliding_attention"
                           : layer >= max_window_layers;
  return sliding ? sliding_window : 0;
}

absl::Status LlamaConfig::SetGenerationConfig(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generation_config.json: expected a JSON object, got ", json.dump().substr(0, 80)));
  }
  std::vector<int64_t> ids;
  if (auto it = json.find("eos_token_id"); it != json.end() && !it->is_null()) {
    const nlohmann::json list = it->is_array() ? *it : nlohmann::json::array({*it});
    for (const nlohmann::json& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("generation_config.json: \"eos_token_id\" = ", it->dump().substr(0, 80),
                         ": expected a token id in [0, ", vocab_size, ") or a list of them"));
      }
      ids.push_back(id.get<int64_t>());
    }
  }
  generation_config = json;
  generation_eos_token_ids = std::move(ids);
  return absl::OkStatus();
}

nlohmann::json LlamaConfig::ToJson() const {
  nlohmann::json rope = nullptr;
  if (rope_scaling.type == RopeScaling::Type::kLinear) {
    rope = {{"rope_type", "linear"}, {"factor", rope_scaling.factor}};
  } else if (rope_scaling.type == RopeScaling::Type::kLlama3) {
    rope = {{"rope_type", "llama3"},
            {"factor", rope_scaling.factor},
            {"low_freq_factor", rope_scaling.low_freq_factor},
            {"high_freq_factor", rope_scaling.high_freq_factor},
            {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  }
  nlohmann::json eos = eos_token_id;
  if (!extra_eos_token_ids.empty()) {
    eos = nlohmann::json::array({eos_token_id});
    for (int64_t id : extra_eos_token_ids) eos.push_back(id);
  }
  nlohmann::json json{
      {"architectures", nlohmann::json::array({architecture()})},
      {"model_type", model_type},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"max_position_embeddings", max_position_embeddings},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"tie_word_embeddings", tie_word_embeddings},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos},
      {"pad_token_id", pad_token_id},
      {"torch_dtype", torch_dtype},
      {"hidden_act", "silu"},
      {"rope_scaling", rope},
      {"initializer_range", 0.02},
      {"use_cache", true},
  };
  if (model_type == "llama") {
    json["attention_bias"] = attention_bias;
    json["mlp_bias"] = mlp_bias;
  }
  if (model_type == "qwen2" || model_type == "mistral") {
    json["sliding_window"] = sliding_window > 0 ? nlohmann::json(sliding_window) : nullptr;
  }
  if (model_type == "qwen2") {
    json["use_sliding_window"] = use_sliding_window;
    json["max_window_layers"] = max_window_layers;
    if (!layer_types.empty()) json["layer_types"] = layer_types;
  }
  return json;
}

}  // namespace unlearning::core
