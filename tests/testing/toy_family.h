// A test double of a model family and a method, so that server tests exercise the whole spine
// (submit, idempotency, rejections, cancel, recovery, publish, rollback, manifests of every
// artifact kind) in seconds, without training a real model. It is injected through
// ServerOptions::{methods, families}; it never ships in the server.
//
// ToyModel: one number `value`, stored as config.json {"architectures": ["ToyModel"], "value": v}.
// It registers as the image-classifier family of the injected registry (a ModelFamily value is
// needed; the toy has no capabilities). Adapter and assistant artifacts are a JSON file with a
// delta on the parent's value, so loading them needs the parent chain.
//
// Method "toy_scale": multiplies the parent's value by `factor` (default 0.1) in `steps` steps
// (default 4) of `step_ms` milliseconds each (default 0), polling cancellation; `kind` selects
// the artifact kind (default "full_weights"). Verifier: figure "forget.value" (the model's value)
// with the default threshold forget.value ratio_at_most 0.5, and "retain.constant" (always 1).
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "core/app/family_registry.h"
#include "core/methods/method_registry.h"

namespace unlearning::testing {

inline nlohmann::json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return nlohmann::json::parse(buffer.str(), nullptr, false);
}

class ToyModel : public core::Model {
 public:
  explicit ToyModel(double value, std::string architecture = "ToyModel")
      : value_(value), architecture_(std::move(architecture)) {}
  core::ModelFamily family() const override { return core::ModelFamily::kImageClassifier; }
  std::string architecture() const override { return architecture_; }
  int64_t num_parameters() const override { return 1; }
  torch::Device device() const override { return torch::kCPU; }
  absl::Status Save(const std::string& dir) const override {
    std::ofstream(dir + "/config.json")
        << nlohmann::json({{"architectures", {architecture_}}, {"value", value_}}).dump();
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<core::Model>> Clone(torch::Device) const override {
    return std::unique_ptr<core::Model>(new ToyModel(value_, architecture_));
  }
  double value() const { return value_; }

 private:
  double value_;
  std::string architecture_;
};

class ToyVerifier : public core::Verifier {
 public:
  std::vector<std::string> FigureNames() const override {
    return {"forget.value", "retain.constant"};
  }
  std::vector<core::Threshold> DefaultThresholds() const override {
    return {{"forget.value", core::Comparison::kRatioAtMost, 0.5, /*required=*/true}};
  }
  absl::StatusOr<core::VerificationReport> Verify(
      const core::VerificationInputs& in) const override {
    const auto* before = dynamic_cast<const ToyModel*>(in.before);
    const auto* after = dynamic_cast<const ToyModel*>(in.after);
    if (before == nullptr || after == nullptr) {
      return absl::InvalidArgumentError("toy verifier needs two toy models");
    }
    return core::MakeReport({{"forget.value", before->value()}, {"retain.constant", 1.0}},
                            {{"forget.value", after->value()}, {"retain.constant", 1.0}},
                            in.thresholds);
  }
};

class ToyScaleMethod : public core::UnlearningMethod {
 public:
  static absl::StatusOr<std::unique_ptr<core::UnlearningMethod>> Create(
      const nlohmann::json& params) {
    auto m = std::make_unique<ToyScaleMethod>();
    m->params_ = {{"factor", 0.1}, {"steps", 4}, {"step_ms", 0}, {"kind", "full_weights"}};
    if (!params.is_null()) {
      for (const auto& [key, value] : params.items()) {
        if (!m->params_.contains(key)) {
          return absl::InvalidArgumentError(absl::StrCat("unknown parameter toy_scale.", key));
        }
        m->params_[key] = value;
      }
    }
    auto kind = core::ParseArtifactKind(m->params_["kind"].get<std::string>());
    if (!kind.ok()) return kind.status();
    m->kind_ = *kind;
    return std::unique_ptr<core::UnlearningMethod>(std::move(m));
  }
  std::string name() const override { return "toy_scale"; }
  core::ModelFamily family() const override { return core::ModelFamily::kImageClassifier; }
  core::ArtifactKind artifact_kind() const override { return kind_; }
  nlohmann::json EffectiveParams() const override { return params_; }
  absl::Status CheckData(const core::ErasureData& data) const override {
    for (int64_t c : data.classes.forget_classes) {
      if (c >= 10) {
        return absl::InvalidArgumentError(
            absl::StrCat("class ", c, " does not exist (the toy has classes 0..9)"));
      }
    }
    return absl::OkStatus();
  }
  int64_t TotalSteps(const core::ErasureData&) const override { return params_["steps"]; }
  absl::StatusOr<core::Candidate> Run(const core::MethodContext& ctx) override {
    const auto* parent = dynamic_cast<const ToyModel*>(ctx.parent);
    if (parent == nullptr) return absl::InvalidArgumentError("toy_scale needs a toy model");
    const int64_t steps = params_["steps"];
    for (int64_t s = 1; s <= steps; ++s) {
      if (ctx.cancel->cancelled()) return absl::CancelledError("cancelled");
      std::this_thread::sleep_for(std::chrono::milliseconds(params_["step_ms"].get<int>()));
      ctx.progress->OnProgress({s, steps, 1.0 / static_cast<double>(s), 0.0, "training"});
    }
    const double value = parent->value() * params_["factor"].get<double>();
    const double delta = value - parent->value();
    core::Candidate c;
    c.kind = kind_;
    c.model = std::make_unique<ToyModel>(value);
    c.facts = {{"delta", delta}};
    if (core::NeedsParent(kind_)) {
      const std::string file =
          kind_ == core::ArtifactKind::kLoraAdapter ? "adapter.json" : "assistant.json";
      c.write = [file, delta](const std::string& dir) {
        std::ofstream(dir + "/" + file) << nlohmann::json({{"delta", delta}}).dump();
        return absl::OkStatus();
      };
    } else {
      const core::Model* m = c.model.get();
      c.write = [m](const std::string& dir) { return m->Save(dir); };
    }
    return c;
  }

 private:
  nlohmann::json params_;
  core::ArtifactKind kind_ = core::ArtifactKind::kFullWeights;
};

inline core::FamilySpec ToyFamily() {
  core::FamilySpec spec;
  spec.family = core::ModelFamily::kImageClassifier;
  spec.architectures = {"ToyModel"};
  spec.recognises = [](const std::string& dir) {
    const nlohmann::json config = ReadJsonFile(dir + "/config.json");
    return config.is_object() && config.contains("architectures") &&
           config["architectures"][0] == "ToyModel";
  };
  spec.load = [](const std::string& dir,
                 torch::Device) -> absl::StatusOr<std::unique_ptr<core::Model>> {
    const nlohmann::json config = ReadJsonFile(dir + "/config.json");
    if (!config.is_object() || !config.contains("value")) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/config.json has no value"));
    }
    return std::unique_ptr<core::Model>(new ToyModel(config["value"].get<double>()));
  };
  spec.load_on_parent = [](core::ArtifactKind kind, const std::string& dir,
                           std::shared_ptr<const core::Model> parent,
                           torch::Device) -> absl::StatusOr<std::unique_ptr<core::Model>> {
    const std::string file =
        kind == core::ArtifactKind::kLoraAdapter ? "adapter.json" : "assistant.json";
    const nlohmann::json delta = ReadJsonFile(dir + "/" + file);
    const auto* toy = dynamic_cast<const ToyModel*>(parent.get());
    if (toy == nullptr || !delta.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("bad toy artifact in ", dir));
    }
    return std::unique_ptr<core::Model>(new ToyModel(toy->value() + delta["delta"].get<double>()));
  };
  spec.verifier = std::make_shared<ToyVerifier>();
  return spec;
}

// The registries a toy server runs with: the toy family (plus the built-in causal-LM row, so
// that pairing a text method with the toy is refused for the right reason) and toy_scale plus
// the built-in methods.
struct ToyRegistries {
  core::MethodRegistry methods;
  core::FamilyRegistry families;
  ToyRegistries() {
    methods = core::MethodRegistry::Builtin();
    methods.Register("toy_scale", core::ModelFamily::kImageClassifier, &ToyScaleMethod::Create);
    families.Register(core::CausalLmFamily());
    families.Register(ToyFamily());
  }
};

inline void WriteToyModel(const std::string& dir, double value) {
  std::filesystem::create_directories(dir);
  (void)ToyModel(value).Save(dir);
}

}  // namespace unlearning::testing
