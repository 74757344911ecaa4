#include "core/common/family.h"

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

}  // namespace unlearning::core
