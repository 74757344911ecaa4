#include "core/methods/method_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "core/methods/baselines/class_forgetting.h"
#include "core/methods/baselines/gradient_ascent.h"
#include "core/methods/baselines/gradient_difference.h"
#include "core/methods/baselines/npo.h"
#include "core/methods/baselines/score_override.h"
#include "core/methods/flat/flat.h"
#include "core/methods/gs_lora/gs_lora.h"
#include "core/methods/sfd/sfd.h"
#include "core/methods/uld/uld.h"

namespace unlearning::core {
namespace {

MethodRegistry* MakeBuiltin() {
  auto* registry = new MethodRegistry();
  registry->Register(FlatMethod::kName, ModelFamily::kCausalLm, &FlatMethod::Create);
  registry->Register(GradientAscentMethod::kName, ModelFamily::kCausalLm,
                     &GradientAscentMethod::Create);
  registry->Register(GradientDifferenceMethod::kName, ModelFamily::kCausalLm,
                     &GradientDifferenceMethod::Create);
  registry->Register(NpoMethod::kName, ModelFamily::kCausalLm, &NpoMethod::Create);
  registry->Register(UldMethod::kName, ModelFamily::kCausalLm, &UldMethod::Create);
  registry->Register(ClassForgettingMethod::kName, ModelFamily::kImageClassifier,
                     &ClassForgettingMethod::Create);
  registry->Register(ClassForgettingMethod::kRetainFinetuneName, ModelFamily::kImageClassifier,
                     &ClassForgettingMethod::CreateRetainFinetune);
  registry->Register(ClassForgettingMethod::kL2FinetuneName, ModelFamily::kImageClassifier,
                     &ClassForgettingMethod::CreateL2Finetune);
  registry->Register(GsLoraMethod::kName, ModelFamily::kImageClassifier, &GsLoraMethod::Create);
  registry->Register(GsLoraMethod::kPlusName, ModelFamily::kImageClassifier,
                     &GsLoraMethod::CreatePlus);
  registry->Register(ScoreOverrideMethod::kName, ModelFamily::kDiffusion,
                     &ScoreOverrideMethod::Create);
  registry->Register(SfdMethod::kName, ModelFamily::kDiffusion, &SfdMethod::Create);
  registry->Register(SfdMethod::kSidName, ModelFamily::kDiffusion, &SfdMethod::CreateSid);
  return registry;
}

}  // namespace

const MethodRegistry& MethodRegistry::Builtin() {
  static const MethodRegistry* const kBuiltin = MakeBuiltin();
  return *kBuiltin;
}

void MethodRegistry::Register(const std::string& name, ModelFamily family, Factory factory) {
  entries_[name] = Entry{family, std::move(factory)};
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> MethodRegistry::Create(
    const std::string& name, const nlohmann::json& params) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown unlearning method \"", name,
                                            "\" (known: ", absl::StrJoin(names(), ", "), ")"));
  }
  return it->second.factory(params);
}

absl::StatusOr<ModelFamily> MethodRegistry::FamilyOf(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown unlearning method \"", name,
                                            "\" (known: ", absl::StrJoin(names(), ", "), ")"));
  }
  return it->second.family;
}

std::vector<std::string> MethodRegistry::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

}  // namespace unlearning::core
