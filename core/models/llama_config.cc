// LlamaConfig <-> Hugging Face config.json.
#include <cstdint>
#include <string>
#include <utility>

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

}  // namespace

absl::StatusOr<LlamaConfig> LlamaConfig::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("config.json: not a JSON object");
  }
  LlamaConfig c;
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
  if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null()) {
    return BadKey("rope_scaling", *it, "RoPE scaling is not supported");
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (auto it = json.find(key);
        it != json.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>())) {
      return BadKey(key, *it, "biases are not supported");
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
  return c;
}

nlohmann::json LlamaConfig::ToJson() const {
  return nlohmann::json{
      {"architectures", nlohmann::json::array({"LlamaForCausalLM"})},
      {"model_type", "llama"},
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
      {"eos_token_id", eos_token_id},
      {"pad_token_id", pad_token_id},
      {"torch_dtype", torch_dtype},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"rope_scaling", nullptr},
      {"initializer_range", 0.02},
      {"use_cache", true},
  };
}

}  // namespace unlearning::core
