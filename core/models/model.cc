#include "core/models/model.h"

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "core/models/causal_lm.h"

namespace unlearning::core {

const char* ModelFamilyName(ModelFamily family) {
  switch (family) {
    case ModelFamily::kCausalLm:
      return "causal_lm";
    case ModelFamily::kImageClassifier:
      return "image_classifier";
    case ModelFamily::kDiffusion:
      return "diffusion";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir, torch::Device device) {
  const std::string path = absl::StrCat(dir, "/config.json");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no model config ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const nlohmann::json config =
      nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  }
  std::string architecture;
  auto arch = config.find("architectures");
  if (arch != config.end() && arch->is_array() && !arch->empty() && (*arch)[0].is_string()) {
    architecture = (*arch)[0].get<std::string>();
  }
  std::string model_type;
  auto type = config.find("model_type");
  if (type != config.end() && type->is_string()) model_type = type->get<std::string>();

  if (architecture == "LlamaForCausalLM" || (architecture.empty() && model_type == "llama")) {
    absl::StatusOr<std::unique_ptr<CausalLm>> lm = CausalLm::Load(dir, device);
    if (!lm.ok()) return lm.status();
    return std::unique_ptr<Model>(std::move(*lm));
  }
  if (architecture.empty() && model_type.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " names no architecture (\"architectures\" or \"model_type\")"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported model architecture '",
                                                 architecture.empty() ? model_type : architecture,
                                                 "' in ", path, " (supported: LlamaForCausalLM)"));
}

}  // namespace unlearning::core
