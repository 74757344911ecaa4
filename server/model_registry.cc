#include "server/model_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace unlearning::server {

absl::Status ModelRegistry::Add(std::shared_ptr<const ServedModelInfo> info,
                                std::shared_ptr<const ServedVersion> serving) {
  absl::MutexLock lock(&mu_);
  const std::string id = info->model_id;
  if (models_.count(id) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("model '", id, "' is already loaded"));
  }
  models_[id] = Entry{std::move(info), std::move(serving), {}};
  return absl::OkStatus();
}

absl::Status ModelRegistry::NotFound(const std::string& model_id) const {
  std::vector<std::string> ids;
  for (const auto& [id, entry] : models_) ids.push_back(id);
  return absl::NotFoundError(absl::StrCat("model '", model_id, "' is not loaded (loaded: ",
                                          ids.empty() ? "none" : absl::StrJoin(ids, ", "), ")"));
}

absl::StatusOr<std::shared_ptr<const ServedModelInfo>> ModelRegistry::Info(
    const std::string& model_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return NotFound(model_id);
  return it->second.info;
}

absl::StatusOr<std::shared_ptr<const ServedVersion>> ModelRegistry::Serving(
    const std::string& model_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return NotFound(model_id);
  return it->second.serving;
}

std::shared_ptr<const ServedVersion> ModelRegistry::Resident(
    const std::string& model_id, int64_t version, const std::string& manifest_sha256) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return nullptr;
  const auto matches = [&](const std::shared_ptr<const ServedVersion>& v) {
    return v && v->version == version && v->manifest_sha256 == manifest_sha256;
  };
  if (matches(it->second.serving)) return it->second.serving;
  for (const auto& v : it->second.extra) {
    if (matches(v)) return v;
  }
  return nullptr;
}

void ModelRegistry::CacheResident(const std::string& model_id,
                                  std::shared_ptr<const ServedVersion> version) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return;
  auto& extra = it->second.extra;
  extra.erase(std::remove_if(extra.begin(), extra.end(),
                             [&](const auto& v) { return v->version == version->version; }),
              extra.end());
  extra.push_back(std::move(version));
  while (static_cast<int>(extra.size()) > kMaxExtraResident) extra.erase(extra.begin());
}

void ModelRegistry::Evict(const std::string& model_id, int64_t version) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return;
  auto& extra = it->second.extra;
  extra.erase(std::remove_if(extra.begin(), extra.end(),
                             [version](const auto& v) { return v->version == version; }),
              extra.end());
}

absl::Status ModelRegistry::Publish(const std::string& model_id,
                                    std::shared_ptr<const ServedVersion> version) {
  std::shared_ptr<const ServedVersion> previous;  // released outside the lock
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return NotFound(model_id);
  previous = std::move(it->second.serving);
  it->second.serving = std::move(version);
  // The previous version stays resident for a while: clients may still ask for it by number.
  if (previous) {
    auto& extra = it->second.extra;
    extra.push_back(previous);
    while (static_cast<int>(extra.size()) > kMaxExtraResident) extra.erase(extra.begin());
  }
  return absl::OkStatus();
}

std::vector<std::string> ModelRegistry::ModelIds() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [id, entry] : models_) ids.push_back(id);
  return ids;
}

bool ModelRegistry::Contains(const std::string& model_id) const {
  absl::ReaderMutexLock lock(&mu_);
  return models_.count(model_id) != 0;
}

}  // namespace unlearning::server
