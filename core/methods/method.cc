#include "core/methods/method.h"

#include "absl/strings/str_cat.h"

namespace unlearning::core {

const char* ArtifactKindName(ArtifactKind kind) {
  switch (kind) {
    case ArtifactKind::kFullWeights:
      return "full_weights";
    case ArtifactKind::kLoraAdapter:
      return "lora_adapter";
    case ArtifactKind::kAssistant:
      return "assistant";
    case ArtifactKind::kOneStepGenerator:
      return "one_step_generator";
  }
  return "unknown";
}

absl::StatusOr<ArtifactKind> ParseArtifactKind(std::string_view name) {
  for (ArtifactKind kind : {ArtifactKind::kFullWeights, ArtifactKind::kLoraAdapter,
                            ArtifactKind::kAssistant, ArtifactKind::kOneStepGenerator}) {
    if (name == ArtifactKindName(kind)) return kind;
  }
  // Versions written before manifests existed say "full".
  if (name == "full") return ArtifactKind::kFullWeights;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown artifact kind '", std::string(name),
                   "' (known: full_weights, lora_adapter, assistant, one_step_generator)"));
}

bool NeedsParent(ArtifactKind kind) {
  return kind == ArtifactKind::kLoraAdapter || kind == ArtifactKind::kAssistant ||
         kind == ArtifactKind::kOneStepGenerator;
}

Candidate Candidate::SelfContained(ArtifactKind kind, std::unique_ptr<Model> model) {
  Candidate c;
  c.kind = kind;
  c.model = std::move(model);
  const Model* m = c.model.get();
  c.write = [m](const std::string& dir) { return m->Save(dir); };
  return c;
}

}  // namespace unlearning::core
