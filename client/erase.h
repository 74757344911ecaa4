// `unlearnctl erase` (submit over the bidirectional Erase stream) and
// `unlearnctl jobs watch` (follow a job to its end, reconnecting when the
// stream breaks).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/connection.h"

namespace unlearning::client {

struct EraseOptions {
  std::string model;
  std::string method;
  std::string forget_path;              // text payload (language models)
  std::vector<int64_t> forget_classes;  // classes / generation payload (image models)
  // Generation payload: a class id, or "random" (each sample of a forgotten label becomes a random
  // retained class).
  std::optional<std::string> override_class;
  int replay_per_class = 0;             // classes payload
  std::vector<std::string> thresholds;  // FIGURE:COMPARISON:BOUND (thresholds.checks)
  std::string retain_path;              // optional
  std::string templates_path;           // optional
  std::string request_id;               // empty = a random UUID (printed on stderr)
  std::vector<std::string> params;      // "key=value"
  std::optional<double> max_forget_ratio;
  std::optional<double> min_retain_ratio;
  std::optional<double> max_mia_auc;
  std::string compliance_reference;
  bool wait = false;
  // How long to keep trying to reach the server again after the stream breaks.
  double reconnect_timeout_seconds = 600;
};

// Submits one erasure request. Without `wait`: prints the job id once ACCEPTED.
// With `wait`: shows progress on stderr until the job ends, then prints the
// verification figures and the certificate id. Returns an ExitCode.
int RunErase(Connection& connection, const EraseOptions& options);

// Follows an existing job to its end (same display and exit codes as `erase
// --wait`).
int RunWatch(Connection& connection, const std::string& job_id, double reconnect_timeout_seconds);

}  // namespace unlearning::client
