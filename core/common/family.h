// The model families the service knows. A family is a kind of model with its own capabilities,
// payload of erasure data and verification figures (core/app/family_registry.h has one row each).
#pragma once

namespace unlearning::core {

enum class ModelFamily { kCausalLm, kImageClassifier, kDiffusion };

// "causal_lm", "image_classifier", "diffusion".
const char* ModelFamilyName(ModelFamily family);

}  // namespace unlearning::core
