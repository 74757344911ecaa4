// One function per non-erasure subcommand. Each prints its result (text, or one
// JSON document per line with --json) and returns an ExitCode.
#pragma once

#include <optional>
#include <string>

#include "client/connection.h"

namespace unlearning::client {

int ModelsList(Connection& connection);
int ModelsDescribe(Connection& connection, const std::string& model_id);
int ModelsLoad(Connection& connection, const std::string& model_id, const std::string& model_dir);
// `force`: roll back even across completed erasures (recorded in the certificate chain).
int ModelsRollback(Connection& connection, const std::string& model_id, int64_t version,
                   bool force);

// `state` is "", or a state name ("running", "COMPLETED", "JOB_STATE_FAILED").
int JobsList(Connection& connection, const std::string& model_id, const std::string& state,
             int page_size, bool all_pages);
int JobsGet(Connection& connection, const std::string& job_id);
int JobsCancel(Connection& connection, const std::string& job_id);

// `id` is a job id or a request id (tried in that order). Prints the
// certificate as indented JSON (one line with --json).
int CertificateGet(Connection& connection, const std::string& id);

struct GenerateOptions {
  std::string model;
  int64_t version = 0;
  std::string prompt;
  bool qa_format = false;
  int32_t max_tokens = 0;  // 0 = server default
  double temperature = 0;
  std::optional<double> top_p;
  uint64_t seed = 0;
  // ULD versions only (LogitDifferenceOptions): this query's α and filter rate.
  std::optional<double> uld_alpha;
  std::optional<double> uld_filter_rate;
};
// Streams generated text to stdout as it arrives.
int Generate(Connection& connection, const GenerateOptions& options);

struct ScoreOptions {
  std::string model;
  int64_t version = 0;
  std::string prompt;
  std::string continuation;
  bool qa_format = false;
  std::optional<double> uld_alpha;
  std::optional<double> uld_filter_rate;
};
int Score(Connection& connection, const ScoreOptions& options);

}  // namespace unlearning::client
