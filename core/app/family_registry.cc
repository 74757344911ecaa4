#include "core/app/family_registry.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <nlohmann/json.hpp>

#include "core/common/sha256.h"
#include "core/common/status_macros.h"
#include "core/data/idx.h"
#include "core/data/text_example.h"
#include "core/models/causal_lm.h"
#include "core/models/diffusion.h"
#include "core/models/logit_difference.h"
#include "core/models/one_step_generator.h"
#include "core/models/vit.h"
#include "core/models/vit_adapter.h"
#include "core/verify/generation_verification.h"
#include "core/verify/text_verification.h"
#include "core/verify/vision_verification.h"

namespace unlearning::core {
namespace fs = std::filesystem;
namespace {

// config.json as JSON, or a discarded value when missing or malformed.
nlohmann::json ReadConfig(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "config.json");
  if (!in) return nlohmann::json(nlohmann::json::value_t::discarded);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
}

std::string StringKey(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  return it != config.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string Architecture(const nlohmann::json& config) {
  auto arch = config.find("architectures");
  if (arch != config.end() && arch->is_array() && !arch->empty() && (*arch)[0].is_string()) {
    return (*arch)[0].get<std::string>();
  }
  return "";
}

absl::StatusOr<std::vector<TextExample>> ReadProbeFile(const std::string& dir, const char* name) {
  const fs::path path = fs::path(dir) / "probes" / (std::string(name) + ".jsonl");
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::vector<TextExample>{};
  absl::StatusOr<std::vector<TextExample>> examples = ReadJsonl(path.string());
  if (!examples.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "probe set ", path.string(), " does not parse: ", examples.status().message()));
  }
  return examples;
}

// SHA-256 over the relative path and SHA-256 of every regular file under <dir>/<sub> for each
// sub-directory (probes, reference, judge), in sorted order: the model's part of the suite hash.
absl::StatusOr<std::string> SuiteDigest(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const char* sub : {"probes", "reference", "judge"}) {
    const fs::path base = fs::path(dir) / sub;
    if (!fs::is_directory(base, ec)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(base, ec)) {
      if (entry.is_regular_file(ec)) {
        files.push_back(fs::relative(entry.path(), dir, ec).generic_string());
      }
    }
  }
  std::sort(files.begin(), files.end());
  Sha256 sha;
  for (const std::string& f : files) {
    UNL_ASSIGN_OR_RETURN(std::string digest, Sha256File((fs::path(dir) / f).string()));
    sha.Update(absl::StrCat(f, " ", digest, "\n"));
  }
  return sha.HexDigest();
}

// <dir>/reference/: a causal LM never trained on some records, and never_trained.jsonl listing
// them. Absent: no reference (nothing set). A reference that does not load is an error.
absl::Status LoadTextReference(const std::string& dir, ModelProbes& probes) {
  const fs::path ref = fs::path(dir) / "reference";
  std::error_code ec;
  if (!fs::exists(ref / "config.json", ec)) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<CausalLm>> lm = CausalLm::Load(ref.string(), torch::kCPU);
  if (!lm.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference model ", ref.string(), " does not load: ", lm.status().message()));
  }
  const fs::path unseen = ref / "never_trained.jsonl";
  absl::StatusOr<std::vector<TextExample>> examples = ReadJsonl(unseen.string());
  if (!examples.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference model ", ref.string(),
                     " needs never_trained.jsonl (the records it never trained on): ",
                     examples.status().message()));
  }
  for (const TextExample& e : *examples) probes.text_reference_unseen.insert(e.question);
  probes.text_reference = std::shared_ptr<const Model>(*std::move(lm));
  return absl::OkStatus();
}

}  // namespace

FamilySpec CausalLmFamily() {
  FamilySpec spec;
  spec.family = ModelFamily::kCausalLm;
  spec.architectures = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"};
  spec.recognises = [](const std::string& dir) {
    const nlohmann::json config = ReadConfig(dir);
    if (!config.is_object()) return false;
    const std::string arch = Architecture(config);
    const std::string type = StringKey(config, "model_type");
    return arch == "LlamaForCausalLM" || arch == "Qwen2ForCausalLM" ||
           arch == "MistralForCausalLM" ||
           (arch.empty() && (type == "llama" || type == "qwen2" || type == "mistral"));
  };
  spec.load = [](const std::string& dir,
                 torch::Device device) -> absl::StatusOr<std::unique_ptr<Model>> {
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> lm, CausalLm::Load(dir, device));
    return std::unique_ptr<Model>(std::move(lm));
  };
  // ULD assistants (kAssistant) stack on their parent: a CausalLm or an earlier ULD composite.
  spec.load_on_parent =
      [](ArtifactKind kind, const std::string& dir, std::shared_ptr<const Model> parent,
         torch::Device /*device: the parent's*/) -> absl::StatusOr<std::unique_ptr<Model>> {
    if (kind != ArtifactKind::kAssistant) {
      return absl::UnimplementedError(
          absl::StrCat("causal language models have no ", ArtifactKindName(kind), " artifacts"));
    }
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<LogitDifferenceLm> lm,
                         LogitDifferenceLm::LoadOnParent(dir, std::move(parent)));
    return std::unique_ptr<Model>(std::move(lm));
  };
  spec.load_probes = [](const std::string& dir) -> absl::StatusOr<ModelProbes> {
    ModelProbes probes;
    UNL_ASSIGN_OR_RETURN(probes.text_retain, ReadProbeFile(dir, "retain"));
    UNL_ASSIGN_OR_RETURN(probes.text_holdout, ReadProbeFile(dir, "holdout"));
    UNL_RETURN_IF_ERROR(LoadTextReference(dir, probes));
    UNL_ASSIGN_OR_RETURN(probes.suite_digest, SuiteDigest(dir));
    return probes;
  };
  spec.verifier = std::make_shared<TextVerifier>();
  return spec;
}

// <dir>/probes/<split>-{images,labels}.idx as LabelledImages; empty when absent.
static absl::StatusOr<LabelledImages> ReadImageProbes(const std::string& dir, const char* split) {
  const fs::path base = fs::path(dir) / "probes";
  const std::string images = (base / absl::StrCat(split, "-images.idx")).string();
  const std::string labels = (base / absl::StrCat(split, "-labels.idx")).string();
  std::error_code ec;
  if (!fs::exists(images, ec) && !fs::exists(labels, ec)) return LabelledImages{};
  absl::StatusOr<LabelledImages> read = ReadLabelledIdx(images, labels);
  if (!read.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("probe set ", images, " does not load: ", read.status().message()));
  }
  return read;
}

FamilySpec ImageClassifierFamily() {
  FamilySpec spec;
  spec.family = ModelFamily::kImageClassifier;
  spec.architectures = {"ViTForImageClassification"};
  spec.recognises = [](const std::string& dir) {
    const nlohmann::json config = ReadConfig(dir);
    return config.is_object() && VitClassifier::Recognises(config);
  };
  spec.load = [](const std::string& dir,
                 torch::Device device) -> absl::StatusOr<std::unique_ptr<Model>> {
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<VitClassifier> vit, VitClassifier::Load(dir, device));
    return std::unique_ptr<Model>(std::move(vit));
  };
  // GS-LoRA adapters (core/models/vit_adapter.h) on their parent version, itself possibly a
  // composite: the server resolves the chain parent first, so adapters apply recursively.
  spec.load_on_parent = [](ArtifactKind kind, const std::string& dir,
                           std::shared_ptr<const Model> parent,
                           torch::Device device) -> absl::StatusOr<std::unique_ptr<Model>> {
    const auto* vit = dynamic_cast<const VitClassifier*>(parent.get());
    if (kind != ArtifactKind::kLoraAdapter || vit == nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          "image classifiers load only lora_adapter artifacts on a ViT parent, got ",
          ArtifactKindName(kind), " on ", parent != nullptr ? parent->architecture() : "nothing"));
    }
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<VitClassifier> composite,
                         LoadVitAdapter(dir, *vit, device));
    return std::unique_ptr<Model>(std::move(composite));
  };
  spec.load_probes = [](const std::string& dir) -> absl::StatusOr<ModelProbes> {
    ModelProbes probes;
    UNL_ASSIGN_OR_RETURN(probes.images_test, ReadImageProbes(dir, "test"));
    UNL_ASSIGN_OR_RETURN(probes.images_train, ReadImageProbes(dir, "train"));
    UNL_ASSIGN_OR_RETURN(probes.suite_digest, SuiteDigest(dir));
    return probes;
  };
  spec.verifier = std::make_shared<VisionVerifier>();
  return spec;
}

FamilySpec DiffusionFamily() {
  FamilySpec spec;
  spec.family = ModelFamily::kDiffusion;
  spec.architectures = {"UNet2DModel", "OneStepGenerator"};
  spec.recognises = [](const std::string& dir) { return DiffusionModel::Recognises(dir); };
  spec.load = [](const std::string& dir,
                 torch::Device device) -> absl::StatusOr<std::unique_ptr<Model>> {
    if (OneStepGenerator::Recognises(dir)) {
      // A generator directory on its own (e.g. an exported version): it samples, but cannot be
      // distilled again without its teacher.
      UNL_ASSIGN_OR_RETURN(std::unique_ptr<OneStepGenerator> generator,
                           OneStepGenerator::Load(dir, device, nullptr));
      return std::unique_ptr<Model>(std::move(generator));
    }
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<DiffusionModel> model, DiffusionModel::Load(dir, device));
    return std::unique_ptr<Model>(std::move(model));
  };
  // SFD's one-step generators on their parent: the teacher itself, or a generator distilled from
  // it (whose teacher the new one keeps).
  spec.load_on_parent = [](ArtifactKind kind, const std::string& dir,
                           std::shared_ptr<const Model> parent,
                           torch::Device device) -> absl::StatusOr<std::unique_ptr<Model>> {
    std::shared_ptr<const DiffusionModel> teacher =
        std::dynamic_pointer_cast<const DiffusionModel>(parent);
    if (teacher == nullptr) {
      if (const auto* generator = dynamic_cast<const OneStepGenerator*>(parent.get())) {
        teacher = generator->teacher();
      }
    }
    if (kind != ArtifactKind::kOneStepGenerator || teacher == nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          "diffusion models load only one_step_generator artifacts on a diffusion teacher, got ",
          ArtifactKindName(kind), " on ", parent != nullptr ? parent->architecture() : "nothing"));
    }
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<OneStepGenerator> generator,
                         OneStepGenerator::Load(dir, device, std::move(teacher)));
    return std::unique_ptr<Model>(std::move(generator));
  };
  spec.load_probes = [](const std::string& dir) -> absl::StatusOr<ModelProbes> {
    ModelProbes probes;
    const std::string judge = (fs::path(dir) / "judge").string();
    std::error_code ec;
    if (fs::exists(fs::path(judge) / "config.json", ec)) {
      absl::StatusOr<std::unique_ptr<VitClassifier>> vit = VitClassifier::Load(judge, torch::kCPU);
      if (!vit.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("judge classifier ", judge, " does not load: ", vit.status().message()));
      }
      probes.judge = std::shared_ptr<const Model>(*std::move(vit));
    }
    UNL_ASSIGN_OR_RETURN(probes.suite_digest, SuiteDigest(dir));
    return probes;
  };
  spec.verifier = std::make_shared<GenerationVerifier>();
  return spec;
}

const FamilyRegistry& FamilyRegistry::Builtin() {
  static const FamilyRegistry* const kBuiltin = [] {
    auto* registry = new FamilyRegistry();
    registry->Register(CausalLmFamily());
    registry->Register(ImageClassifierFamily());
    registry->Register(DiffusionFamily());
    return registry;
  }();
  return *kBuiltin;
}

void FamilyRegistry::Register(FamilySpec spec) {
  const ModelFamily family = spec.family;
  rows_[family] = std::move(spec);
}

absl::StatusOr<const FamilySpec*> FamilyRegistry::Find(ModelFamily family) const {
  auto it = rows_.find(family);
  if (it == rows_.end()) {
    return absl::NotFoundError(
        absl::StrCat("this server does not serve ", ModelFamilyName(family), " models"));
  }
  return &it->second;
}

absl::StatusOr<const FamilySpec*> FamilyRegistry::Recognise(const std::string& dir) const {
  std::error_code ec;
  if (!fs::exists(fs::path(dir) / "config.json", ec) &&
      !fs::exists(fs::path(dir) / "model_index.json", ec)) {
    return absl::NotFoundError(
        absl::StrCat("no model config in ", dir, " (expected config.json or model_index.json)"));
  }
  std::vector<std::string> supported;
  for (const auto& [family, spec] : rows_) {
    if (spec.recognises && spec.recognises(dir)) return &spec;
    supported.insert(supported.end(), spec.architectures.begin(), spec.architectures.end());
  }
  const nlohmann::json config = ReadConfig(dir);
  std::string named;
  if (config.is_object()) {
    named = Architecture(config);
    if (named.empty()) named = StringKey(config, "model_type");
  }
  return absl::InvalidArgumentError(absl::StrCat(
      named.empty() ? absl::StrCat("the model config in ", dir, " names no known architecture")
                    : absl::StrCat("unsupported model architecture '", named, "' in ", dir),
      " (supported: ", absl::StrJoin(supported, ", "), ")"));
}

absl::StatusOr<std::unique_ptr<Model>> FamilyRegistry::Load(const std::string& dir,
                                                            torch::Device device) const {
  UNL_ASSIGN_OR_RETURN(const FamilySpec* spec, Recognise(dir));
  return spec->load(dir, device);
}

std::vector<ModelFamily> FamilyRegistry::families() const {
  std::vector<ModelFamily> out;
  for (const auto& [family, spec] : rows_) out.push_back(family);
  return out;
}

}  // namespace unlearning::core
