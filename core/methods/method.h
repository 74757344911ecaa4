// The unlearning-method interface: every method (FLAT, GA, GD, NPO now; ULD,
// GS-LoRA, SFD later) is one folder under core/methods/ implementing
// UnlearningMethod, registered by name in method_registry.cc. The server knows
// methods only through the registry.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include <nlohmann/json.hpp>

#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/data/text_example.h"
#include "core/models/model.h"

namespace unlearning::core {

// The data of one erasure request.
struct ErasureData {
  std::vector<TextExample> forget;
  std::vector<TextExample> retain;     // may be empty
  std::vector<std::string> templates;  // template answers (FLAT); may be empty
};

// What a method run gets. Pointers are borrowed for the duration of Run().
struct MethodContext {
  Model* model = nullptr;            // the working copy; trained in place
  const Model* reference = nullptr;  // frozen parent version (for NPO / KL terms); never null
  const ErasureData* data = nullptr;
  ProgressSink* progress = nullptr;           // never null
  const CancellationToken* cancel = nullptr;  // never null
};

// One configured run of a method. Created by MethodRegistry::Create with
// validated parameters. Not thread-safe; one instance per job.
class UnlearningMethod {
 public:
  virtual ~UnlearningMethod() = default;
  // Registry name, e.g. "flat".
  virtual std::string name() const = 0;
  virtual ModelFamily family() const = 0;
  // The parameters in effect (defaults filled in), as canonical JSON for the
  // certificate.
  virtual nlohmann::json EffectiveParams() const = 0;
  // Checks that the request's data suits the method (e.g. gradient difference
  // needs a retain set). kInvalidArgument with what to fix.
  virtual absl::Status CheckData(const ErasureData& data) const { return absl::OkStatus(); }
  // Optimisation steps Run() will take on `data` (for progress and ETA).
  virtual int64_t TotalSteps(const ErasureData& data) const = 0;
  // Runs the method on ctx.model. kCancelled if ctx.cancel fired (the model is
  // then undefined and must be discarded); other errors for failures.
  virtual absl::Status Run(const MethodContext& ctx) = 0;
};

}  // namespace unlearning::core
