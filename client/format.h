// Output helpers: JSON of protobuf messages, aligned text tables, names, times
// and the progress display of a running job.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "unlearning/v1/erasure.pb.h"
#include "unlearning/v1/models.pb.h"

namespace unlearning::client {

// The message as JSON (proto field names, default values included). One line
// unless `pretty`.
std::string ToJson(const google::protobuf::Message& message, bool pretty = false);
// Writes ToJson(message) and a newline to stdout.
void PrintJson(const google::protobuf::Message& message);

// A text table with left-aligned columns separated by two spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> row);
  void Print(std::ostream& out) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "RUNNING" for JOB_STATE_RUNNING.
std::string JobStateName(v1::JobState state);
// Parses "running", "RUNNING" or "JOB_STATE_RUNNING". False if unknown.
bool ParseJobState(const std::string& text, v1::JobState* state);
// "CAUSAL_LM", "FULL_WEIGHTS", ... without the enum prefix.
std::string FamilyName(v1::ModelFamily family);
std::string ArtifactKindName(v1::ArtifactKind kind);
// "2024-05-01T12:00:03Z" (UTC) or "-" for 0.
std::string FormatUnixMs(int64_t unix_ms);
// "1h02m", "3m05s", "12s".
std::string FormatSeconds(double seconds);
// A compact number: 0.0312, 1.23e-05.
std::string FormatNumber(double value);

// Prints the verification figures (name, before, after, after/before) and the
// threshold checks.
void PrintVerification(const v1::VerificationReport& report, std::ostream& out);
// Prints a job as "key: value" lines followed by its verification report.
void PrintJob(const v1::Job& job, std::ostream& out);

// Shows a job's training progress on stderr: one updating line on a terminal,
// otherwise a line every ~10% and on each phase change.
class ProgressDisplay {
 public:
  // `enabled` = false makes every call a no-op.
  explicit ProgressDisplay(bool enabled);
  ~ProgressDisplay();
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  void Update(const v1::Progress& progress);
  // Ends the updating line (if any) so later output starts on a fresh line.
  void Finish();

 private:
  bool enabled_;
  bool tty_;
  bool line_open_ = false;
  int last_decile_ = -1;
  std::string last_phase_;
};

}  // namespace unlearning::client
