// ViTConfig <-> Hugging Face config.json; ViTImageProcessorConfig <-> preprocessor_config.json.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "core/common/status_macros.h"
#include "core/models/vit.h"

namespace unlearning::core {
namespace {

absl::Status BadKey(const char* file, const std::string& key, const nlohmann::json& value,
                    const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": \"", key, "\" = ", value.dump(), ": ", why));
}

absl::Status BadConfig(const std::string& key, const nlohmann::json& value,
                       const std::string& why) {
  return BadKey("config.json", key, value, why);
}

absl::Status BadPreprocessor(const std::string& key, const nlohmann::json& value,
                             const std::string& why) {
  return BadKey("preprocessor_config.json", key, value, why);
}

// Reads an optional integer key; null keeps the default.
absl::Status ReadInt(const nlohmann::json& json, const std::string& key, int64_t* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return BadConfig(key, *it, "out of range");
    }
    *out = static_cast<int64_t>(it->get<uint64_t>());
    return absl::OkStatus();
  }
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
    return absl::OkStatus();
  }
  return BadConfig(key, *it, "expected an integer");
}

absl::Status ReadDouble(const nlohmann::json& json, const std::string& key, double* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return BadConfig(key, *it, "expected a number");
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const nlohmann::json& json, const std::string& key, bool* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return BadConfig(key, *it, "expected a boolean");
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status Positive(const std::string& key, int64_t value) {
  if (value <= 0) return BadConfig(key, value, "must be positive");
  return absl::OkStatus();
}

// "id2label": {"0": "T-shirt/top", ...}, keys exactly "0".."L-1". Without it, HF uses
// num_labels (default 2) labels named "LABEL_i".
absl::Status ReadLabels(const nlohmann::json& json, std::vector<std::string>* out) {
  int64_t num_labels = -1;
  UNL_RETURN_IF_ERROR(ReadInt(json, "num_labels", &num_labels));
  auto it = json.find("id2label");
  if (it == json.end() || it->is_null()) {
    if (num_labels == -1) num_labels = 2;
    if (num_labels <= 0 || num_labels > 100000) {
      return BadConfig("num_labels", num_labels, "must be in [1, 100000]");
    }
    out->clear();
    for (int64_t i = 0; i < num_labels; ++i) out->push_back(absl::StrCat("LABEL_", i));
    return absl::OkStatus();
  }
  if (!it->is_object() || it->empty()) {
    return BadConfig("id2label", *it, "expected a non-empty object {\"0\": name, ...}");
  }
  std::vector<std::string> labels(it->size());
  std::vector<bool> seen(it->size(), false);
  for (const auto& [key, name] : it->items()) {
    int64_t id = -1;
    if (!absl::SimpleAtoi(key, &id) || absl::StrCat(id) != key || id < 0 ||
        id >= static_cast<int64_t>(labels.size())) {
      return BadConfig(
          "id2label", *it,
          absl::StrCat("key \"", key, "\" is not a class id in [0, ", labels.size(), ")"));
    }
    if (!name.is_string()) {
      return BadConfig("id2label", *it, absl::StrCat("label of \"", key, "\" is not a string"));
    }
    labels[static_cast<size_t>(id)] = name.get<std::string>();
    seen[static_cast<size_t>(id)] = true;
  }
  for (bool s : seen) {
    if (!s) return BadConfig("id2label", *it, "class ids must be 0..num_labels-1 exactly");
  }
  if (num_labels != -1 && num_labels != static_cast<int64_t>(labels.size())) {
    return BadConfig("num_labels", num_labels,
                     absl::StrCat("id2label has ", labels.size(), " labels"));
  }
  if (auto l2i = json.find("label2id"); l2i != json.end() && !l2i->is_null() && !l2i->is_object()) {
    return BadConfig("label2id", *l2i, "expected an object {name: id, ...}");
  }
  *out = std::move(labels);
  return absl::OkStatus();
}

// A per-channel list (or one number for every channel) of `channels` values.
absl::Status ReadChannelList(const nlohmann::json& json, const std::string& key, int64_t channels,
                             std::vector<double>* out) {
  auto it = json.find(key);
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number()) {
    out->assign(static_cast<size_t>(channels), it->get<double>());
    return absl::OkStatus();
  }
  if (!it->is_array() || static_cast<int64_t>(it->size()) != channels) {
    return BadPreprocessor(key, *it,
                           absl::StrCat("expected ", channels, " numbers (num_channels)"));
  }
  std::vector<double> values;
  for (const auto& v : *it) {
    if (!v.is_number()) return BadPreprocessor(key, *it, "expected numbers");
    values.push_back(v.get<double>());
  }
  *out = std::move(values);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ViTConfig> ViTConfig::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  ViTConfig c;
  UNL_RETURN_IF_ERROR(ReadInt(json, "image_size", &c.image_size));
  UNL_RETURN_IF_ERROR(ReadInt(json, "patch_size", &c.patch_size));
  UNL_RETURN_IF_ERROR(ReadInt(json, "num_channels", &c.num_channels));
  UNL_RETURN_IF_ERROR(ReadInt(json, "hidden_size", &c.hidden_size));
  UNL_RETURN_IF_ERROR(ReadInt(json, "num_hidden_layers", &c.num_hidden_layers));
  UNL_RETURN_IF_ERROR(ReadInt(json, "num_attention_heads", &c.num_attention_heads));
  UNL_RETURN_IF_ERROR(ReadInt(json, "intermediate_size", &c.intermediate_size));
  UNL_RETURN_IF_ERROR(ReadDouble(json, "layer_norm_eps", &c.layer_norm_eps));
  UNL_RETURN_IF_ERROR(ReadDouble(json, "initializer_range", &c.initializer_range));
  UNL_RETURN_IF_ERROR(ReadBool(json, "qkv_bias", &c.qkv_bias));
  UNL_RETURN_IF_ERROR(ReadLabels(json, &c.id2label));
  for (const char* key : {"torch_dtype", "dtype"}) {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    if (!it->is_string()) return BadConfig(key, *it, "expected a string");
    std::string dtype = it->get<std::string>();
    if (dtype == "float" || dtype == "fp32") dtype = "float32";
    if (dtype == "bf16") dtype = "bfloat16";
    if (dtype == "half" || dtype == "fp16") dtype = "float16";
    if (dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
      return BadConfig(key, *it, "supported: float32, bfloat16, float16");
    }
    c.torch_dtype = dtype;
    break;
  }
  if (auto it = json.find("unlearning_forgotten_classes"); it != json.end() && !it->is_null()) {
    if (!it->is_array()) {
      return BadConfig("unlearning_forgotten_classes", *it, "expected an array of class ids");
    }
    for (const nlohmann::json& id : *it) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= c.num_labels() ||
          (!c.forgotten_classes.empty() && id.get<int64_t>() <= c.forgotten_classes.back())) {
        return BadConfig(
            "unlearning_forgotten_classes", *it,
            absl::StrCat("expected ascending distinct class ids in 0..", c.num_labels() - 1));
      }
      c.forgotten_classes.push_back(id.get<int64_t>());
    }
  }
  if (auto it = json.find("hidden_act"); it != json.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>() != "gelu") {
      return BadConfig("hidden_act", *it, "only \"gelu\" (exact, erf) is supported");
    }
  }

  UNL_RETURN_IF_ERROR(Positive("image_size", c.image_size));
  UNL_RETURN_IF_ERROR(Positive("patch_size", c.patch_size));
  UNL_RETURN_IF_ERROR(Positive("num_channels", c.num_channels));
  // The preprocessor holds one mean and std per channel: an absurd count must not allocate.
  constexpr int64_t kMaxChannels = 64;
  if (c.num_channels > kMaxChannels) {
    return BadConfig("num_channels", c.num_channels,
                     absl::StrCat("must be at most ", kMaxChannels));
  }
  UNL_RETURN_IF_ERROR(Positive("hidden_size", c.hidden_size));
  UNL_RETURN_IF_ERROR(Positive("num_hidden_layers", c.num_hidden_layers));
  UNL_RETURN_IF_ERROR(Positive("num_attention_heads", c.num_attention_heads));
  UNL_RETURN_IF_ERROR(Positive("intermediate_size", c.intermediate_size));
  if (c.image_size % c.patch_size != 0) {
    return BadConfig("patch_size", c.patch_size,
                     absl::StrCat("does not divide image_size ", c.image_size));
  }
  if (c.hidden_size % c.num_attention_heads != 0) {
    return BadConfig("num_attention_heads", c.num_attention_heads,
                     absl::StrCat("does not divide hidden_size ", c.hidden_size));
  }
  if (!(c.layer_norm_eps > 0.0) || !std::isfinite(c.layer_norm_eps)) {
    return BadConfig("layer_norm_eps", c.layer_norm_eps, "must be positive");
  }
  if (!(c.initializer_range > 0.0) || !std::isfinite(c.initializer_range)) {
    return BadConfig("initializer_range", c.initializer_range, "must be positive");
  }
  return c;
}

nlohmann::json ViTConfig::ToJson() const {
  nlohmann::json id2label_json = nlohmann::json::object();
  nlohmann::json label2id_json = nlohmann::json::object();
  for (size_t i = 0; i < id2label.size(); ++i) {
    id2label_json[std::to_string(i)] = id2label[i];
    label2id_json[id2label[i]] = static_cast<int64_t>(i);
  }
  nlohmann::json json{
      {"architectures", nlohmann::json::array({"ViTForImageClassification"})},
      {"model_type", "vit"},
      {"image_size", image_size},
      {"patch_size", patch_size},
      {"num_channels", num_channels},
      {"hidden_size", hidden_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"intermediate_size", intermediate_size},
      {"hidden_act", hidden_act},
      {"hidden_dropout_prob", 0.0},
      {"attention_probs_dropout_prob", 0.0},
      {"initializer_range", initializer_range},
      {"layer_norm_eps", layer_norm_eps},
      {"qkv_bias", qkv_bias},
      {"encoder_stride", patch_size},
      {"id2label", id2label_json},
      {"label2id", label2id_json},
      {"problem_type", "single_label_classification"},
      {"torch_dtype", torch_dtype},
  };
  if (!forgotten_classes.empty()) json["unlearning_forgotten_classes"] = forgotten_classes;
  return json;
}

absl::StatusOr<ViTImageProcessorConfig> ViTImageProcessorConfig::FromJson(
    const nlohmann::json& json, const ViTConfig& config) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("preprocessor_config.json: not a JSON object");
  }
  ViTImageProcessorConfig p = Default(config);
  const int64_t channels = config.num_channels;
  UNL_RETURN_IF_ERROR(ReadChannelList(json, "image_mean", channels, &p.image_mean));
  UNL_RETURN_IF_ERROR(ReadChannelList(json, "image_std", channels, &p.image_std));
  for (const char* key : {"do_normalize", "do_rescale"}) {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    if (!it->is_boolean()) return BadPreprocessor(key, *it, "expected a boolean");
    (std::string(key) == "do_normalize" ? p.do_normalize : p.do_rescale) = it->get<bool>();
  }
  if (auto it = json.find("rescale_factor"); it != json.end() && !it->is_null()) {
    if (!it->is_number() || !(it->get<double>() > 0.0)) {
      return BadPreprocessor("rescale_factor", *it, "expected a positive number");
    }
    p.rescale_factor = it->get<double>();
  }
  if (auto it = json.find("size"); it != json.end() && !it->is_null()) {
    int64_t height = -1;
    int64_t width = -1;
    if (it->is_number_integer()) {
      height = width = it->get<int64_t>();
    } else if (it->is_object() && it->contains("height") && it->contains("width") &&
               (*it)["height"].is_number_integer() && (*it)["width"].is_number_integer()) {
      height = (*it)["height"].get<int64_t>();
      width = (*it)["width"].get<int64_t>();
    }
    if (height != config.image_size || width != config.image_size) {
      return BadPreprocessor("size", *it,
                             absl::StrCat("expected {\"height\": ", config.image_size,
                                          ", \"width\": ", config.image_size,
                                          "} (image_size; resizing is not supported)"));
    }
    p.size = height;
  }
  for (size_t i = 0; i < p.image_std.size(); ++i) {
    if (!(p.image_std[i] > 0.0) || !std::isfinite(p.image_std[i])) {
      return BadPreprocessor("image_std", p.image_std, "every value must be positive");
    }
    if (!std::isfinite(p.image_mean[i])) {
      return BadPreprocessor("image_mean", p.image_mean, "every value must be finite");
    }
  }
  return p;
}

nlohmann::json ViTImageProcessorConfig::ToJson() const {
  return nlohmann::json{
      {"image_processor_type", "ViTImageProcessor"},
      {"do_resize", false},
      {"size", {{"height", size}, {"width", size}}},
      {"resample", 2},
      {"do_rescale", do_rescale},
      {"rescale_factor", rescale_factor},
      {"do_normalize", do_normalize},
      {"image_mean", image_mean},
      {"image_std", image_std},
  };
}

ViTImageProcessorConfig ViTImageProcessorConfig::Default(const ViTConfig& config) {
  ViTImageProcessorConfig p;
  p.image_mean.assign(static_cast<size_t>(config.num_channels), 0.5);
  p.image_std.assign(static_cast<size_t>(config.num_channels), 0.5);
  p.size = config.image_size;
  return p;
}

}  // namespace unlearning::core
