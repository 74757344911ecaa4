#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/method.h"

namespace unlearning::core {

// Method name -> factory. The factory validates `params` (a JSON object of the
// method's parameters; missing keys take defaults) and returns kInvalidArgument
// naming the bad key, its value and the allowed range. Thread-safe after
// construction (read-only).
class MethodRegistry {
 public:
  using Factory =
      std::function<absl::StatusOr<std::unique_ptr<UnlearningMethod>>(const nlohmann::json&)>;

  // The registry with every built-in method.
  static const MethodRegistry& Builtin();

  void Register(const std::string& name, ModelFamily family, Factory factory);
  // kNotFound for an unknown name (listing the known ones).
  absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const std::string& name,
                                                           const nlohmann::json& params) const;
  // kNotFound for an unknown name.
  absl::StatusOr<ModelFamily> FamilyOf(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  struct Entry {
    ModelFamily family;
    Factory factory;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace unlearning::core
