// ModelStore::Load with the default loader (core::LoadModel), in its own
// translation unit so that code using only the rest of the store does not pull
// in every model family at link time.
#include "core/models/model.h"
#include "server/infra/model_store.h"

namespace unlearning::server {

absl::StatusOr<std::unique_ptr<core::Model>> ModelStore::Load(const std::string& model_id,
                                                              int64_t version,
                                                              torch::Device device) const {
  return Load(model_id, version, device, ModelLoader(&core::LoadModel));
}

}  // namespace unlearning::server
