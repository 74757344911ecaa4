// UNet2DConfig <-> diffusers unet/config.json.
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "core/common/status_macros.h"
#include "core/models/unet.h"

namespace unlearning::core {
namespace {

absl::Status BadKey(const std::string& key, const nlohmann::json& value, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("unet/config.json: \"", key, "\" = ", value.dump(), ": ", why));
}

// Optional integer key; null or absent keeps the default.
absl::Status ReadInt(const nlohmann::json& json, const std::string& key, int64_t* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return BadKey(key, *it, "expected an integer");
  *out = it->get<int64_t>();
  return absl::OkStatus();
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

// A string key that, when present and not null, must equal `expected`.
absl::Status ExpectString(const nlohmann::json& json, const std::string& key,
                          const std::string& expected) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string() || it->get<std::string>() != expected) {
    return BadKey(key, *it, absl::StrCat("only \"", expected, "\" is supported"));
  }
  return absl::OkStatus();
}

// A list of block types that must all be `expected` and number `levels`.
absl::Status ExpectBlockTypes(const nlohmann::json& json, const std::string& key,
                              const std::string& expected, int64_t levels) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array() || static_cast<int64_t>(it->size()) != levels) {
    return BadKey(key, *it,
                  absl::StrCat("expected a list of ", levels, " block types (one per level)"));
  }
  for (const auto& type : *it) {
    if (!type.is_string() || type.get<std::string>() != expected) {
      return BadKey(key, *it, absl::StrCat("only \"", expected, "\" blocks are supported"));
    }
  }
  return absl::OkStatus();
}

absl::Status Positive(const std::string& key, int64_t value) {
  if (value <= 0) return BadKey(key, value, "must be positive");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UNet2DConfig> UNet2DConfig::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("unet/config.json: not a JSON object");
  UNet2DConfig c;
  UNL_RETURN_IF_ERROR(ExpectString(json, "_class_name", "UNet2DModel"));
  UNL_RETURN_IF_ERROR(ReadInt(json, "sample_size", &c.sample_size));
  UNL_RETURN_IF_ERROR(ReadInt(json, "in_channels", &c.in_channels));
  UNL_RETURN_IF_ERROR(ReadInt(json, "out_channels", &c.out_channels));
  if (auto it = json.find("block_out_channels"); it != json.end() && !it->is_null()) {
    if (!it->is_array() || it->empty()) {
      return BadKey("block_out_channels", *it, "expected a non-empty list of integers");
    }
    c.block_out_channels.clear();
    for (const auto& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0) {
        return BadKey("block_out_channels", *it, "expected positive integers");
      }
      c.block_out_channels.push_back(v.get<int64_t>());
    }
  }
  UNL_RETURN_IF_ERROR(ReadInt(json, "layers_per_block", &c.layers_per_block));
  UNL_RETURN_IF_ERROR(ReadInt(json, "norm_num_groups", &c.norm_num_groups));
  UNL_RETURN_IF_ERROR(ReadDouble(json, "norm_eps", &c.norm_eps));
  UNL_RETURN_IF_ERROR(ReadBool(json, "flip_sin_to_cos", &c.flip_sin_to_cos));
  UNL_RETURN_IF_ERROR(ReadInt(json, "freq_shift", &c.freq_shift));
  UNL_RETURN_IF_ERROR(ReadInt(json, "num_class_embeds", &c.num_class_embeds));
  auto classes = json.find("num_class_embeds");
  if (classes == json.end() || classes->is_null()) {
    return absl::InvalidArgumentError(
        "unet/config.json: \"num_class_embeds\" is required (a class-conditional UNet)");
  }
  c.null_class_id = c.num_class_embeds - 1;
  UNL_RETURN_IF_ERROR(ReadInt(json, "null_class_id", &c.null_class_id));
  if (auto it = json.find("id2label"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) return BadKey("id2label", *it, "expected an object");
    for (const auto& [key, value] : it->items()) {
      int64_t id = -1;
      if (!absl::SimpleAtoi(key, &id)) id = -1;
      if (id < 0 || !value.is_string()) {
        return BadKey("id2label", *it, "expected {\"<class id>\": \"<name>\"}");
      }
      c.id2label[id] = value.get<std::string>();
    }
  }

  UNL_RETURN_IF_ERROR(ExpectString(json, "act_fn", "silu"));
  UNL_RETURN_IF_ERROR(ExpectString(json, "time_embedding_type", "positional"));
  UNL_RETURN_IF_ERROR(ExpectString(json, "resnet_time_scale_shift", "default"));
  UNL_RETURN_IF_ERROR(ExpectString(json, "downsample_type", "conv"));
  UNL_RETURN_IF_ERROR(ExpectString(json, "upsample_type", "conv"));
  if (auto it = json.find("class_embed_type"); it != json.end() && !it->is_null()) {
    return BadKey("class_embed_type", *it, "only null (a learned class embedding) is supported");
  }
  // diffusers' default is true, so an absent key means attention too.
  if (auto it = json.find("add_attention");
      it == json.end() || !it->is_boolean() || it->get<bool>()) {
    return BadKey("add_attention", it == json.end() ? nlohmann::json(true) : *it,
                  "attention blocks are not supported; set false");
  }
  if (auto it = json.find("center_input_sample");
      it != json.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>())) {
    return BadKey("center_input_sample", *it, "only false is supported");
  }
  for (const char* key : {"mid_block_scale_factor", "downsample_padding"}) {
    if (auto it = json.find(key);
        it != json.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 1.0)) {
      return BadKey(key, *it, "only 1 is supported");
    }
  }
  if (auto it = json.find("dropout");
      it != json.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0.0)) {
    return BadKey("dropout", *it, "only 0 is supported");
  }

  UNL_RETURN_IF_ERROR(Positive("sample_size", c.sample_size));
  UNL_RETURN_IF_ERROR(Positive("in_channels", c.in_channels));
  UNL_RETURN_IF_ERROR(Positive("out_channels", c.out_channels));
  UNL_RETURN_IF_ERROR(Positive("layers_per_block", c.layers_per_block));
  UNL_RETURN_IF_ERROR(Positive("norm_num_groups", c.norm_num_groups));
  UNL_RETURN_IF_ERROR(Positive("num_class_embeds", c.num_class_embeds));
  if (!(c.norm_eps > 0.0)) return BadKey("norm_eps", c.norm_eps, "must be positive");
  if (c.freq_shift < 0 || c.freq_shift >= c.block_out_channels[0] / 2) {
    return BadKey("freq_shift", c.freq_shift,
                  absl::StrCat("must be in [0, ", c.block_out_channels[0] / 2, ")"));
  }
  UNL_RETURN_IF_ERROR(ExpectBlockTypes(json, "down_block_types", "DownBlock2D", c.num_levels()));
  UNL_RETURN_IF_ERROR(ExpectBlockTypes(json, "up_block_types", "UpBlock2D", c.num_levels()));
  for (int64_t ch : c.block_out_channels) {
    if (ch % c.norm_num_groups != 0) {
      return BadKey("norm_num_groups", c.norm_num_groups,
                    absl::StrCat("does not divide block_out_channels entry ", ch));
    }
  }
  // Deeper than any real UNet, and keeps the stride below from overflowing.
  constexpr int64_t kMaxLevels = 16;
  if (c.num_levels() > kMaxLevels) {
    return BadKey("block_out_channels", c.block_out_channels,
                  absl::StrCat("at most ", kMaxLevels, " levels are supported"));
  }
  const int64_t stride = int64_t{1} << (c.num_levels() - 1);
  if (c.sample_size % stride != 0) {
    return BadKey("sample_size", c.sample_size,
                  absl::StrCat("must be divisible by 2^(levels - 1) = ", stride));
  }
  if (c.null_class_id < 0 || c.null_class_id >= c.num_class_embeds) {
    return BadKey("null_class_id", c.null_class_id,
                  absl::StrCat("must be in [0, num_class_embeds = ", c.num_class_embeds, ")"));
  }
  for (const auto& [id, name] : c.id2label) {
    if (id >= c.null_class_id) {
      return BadKey("id2label", id,
                    absl::StrCat("class id outside [0, null_class_id = ", c.null_class_id, ")"));
    }
  }
  return c;
}

nlohmann::json UNet2DConfig::ToJson() const {
  const size_t levels = block_out_channels.size();
  nlohmann::json id2label_json = nlohmann::json::object();
  for (const auto& [id, name] : id2label) id2label_json[std::to_string(id)] = name;
  return nlohmann::json{
      {"_class_name", "UNet2DModel"},
      {"_diffusers_version", "0.21.4"},
      {"sample_size", sample_size},
      {"in_channels", in_channels},
      {"out_channels", out_channels},
      {"center_input_sample", false},
      {"time_embedding_type", "positional"},
      {"freq_shift", freq_shift},
      {"flip_sin_to_cos", flip_sin_to_cos},
      {"down_block_types", std::vector<std::string>(levels, "DownBlock2D")},
      {"up_block_types", std::vector<std::string>(levels, "UpBlock2D")},
      {"block_out_channels", block_out_channels},
      {"layers_per_block", layers_per_block},
      {"mid_block_scale_factor", 1},
      {"downsample_padding", 1},
      {"downsample_type", "conv"},
      {"upsample_type", "conv"},
      {"dropout", 0.0},
      {"act_fn", "silu"},
      {"attention_head_dim", nullptr},
      {"norm_num_groups", norm_num_groups},
      {"attn_norm_num_groups", nullptr},
      {"norm_eps", norm_eps},
      {"resnet_time_scale_shift", "default"},
      {"add_attention", false},
      {"class_embed_type", nullptr},
      {"num_class_embeds", num_class_embeds},
      {"num_train_timesteps", nullptr},
      {"null_class_id", null_class_id},
      {"id2label", id2label_json},
  };
}

}  // namespace unlearning::core
