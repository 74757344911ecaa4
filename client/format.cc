#include "client/format.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <google/protobuf/util/json_util.h>

namespace unlearning::client {

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    return absl::StrCat("{\"error\":\"cannot print ", message.GetTypeName(), " as JSON\"}");
  }
  if (pretty && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void PrintJson(const google::protobuf::Message& message) {
  std::cout << ToJson(message) << std::endl;
}

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(header_.size());
  for (size_t i = 0; i < header_.size(); ++i) widths[i] = header_[i].size();
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  };
  print_row(header_);
  for (const auto& row : rows_) print_row(row);
}

std::string JobStateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  if (absl::StartsWith(name, "JOB_STATE_")) name = name.substr(10);
  return name.empty() ? absl::StrCat("STATE_", static_cast<int>(state)) : name;
}

bool ParseJobState(const std::string& text, v1::JobState* state) {
  std::string upper = absl::AsciiStrToUpper(text);
  if (!absl::StartsWith(upper, "JOB_STATE_")) upper = absl::StrCat("JOB_STATE_", upper);
  return v1::JobState_Parse(upper, state) && *state != v1::JOB_STATE_UNSPECIFIED;
}

std::string FamilyName(v1::ModelFamily family) {
  std::string name = v1::ModelFamily_Name(family);
  return absl::StartsWith(name, "MODEL_FAMILY_") ? name.substr(13) : name;
}

std::string ArtifactKindName(v1::ArtifactKind kind) {
  std::string name = v1::ArtifactKind_Name(kind);
  return absl::StartsWith(name, "ARTIFACT_KIND_") ? name.substr(14) : name;
}

std::string FormatUnixMs(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string FormatSeconds(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string FormatNumber(double value) { return absl::StrFormat("%.4g", value); }

void PrintVerification(const v1::VerificationReport& report, std::ostream& out) {
  if (report.figures().empty() && report.checks().empty()) return;
  out << absl::StrFormat("verification: %s (forget %d, retain %d, holdout %d examples)\n",
                         report.passed() ? "passed" : "FAILED", report.forget_examples(),
                         report.retain_examples(), report.holdout_examples());
  if (report.already_absent()) {
    out << "  already absent: the model version before already met the thresholds on this forget "
           "set; nothing was trained or published (the figures are the evidence)\n";
  }
  for (const v1::TierCoverage& tier : report.tiers()) {
    out << absl::StrFormat("  %s %s: %s\n", tier.tier(),
                           tier.computed() ? "computed" : "not computed", tier.basis());
  }
  if (!report.suite_sha256().empty())
    out << "  evaluation suite: " << report.suite_sha256() << "\n";
  Table table({"FIGURE", "TIER", "BEFORE", "AFTER", "RATIO"});
  for (const v1::Figure& figure : report.figures()) {
    std::string ratio = figure.before() != 0 ? FormatNumber(figure.after() / figure.before()) : "-";
    table.AddRow({figure.name(), figure.tier().empty() ? "-" : figure.tier(),
                  FormatNumber(figure.before()), FormatNumber(figure.after()), ratio});
  }
  if (!table.empty()) table.Print(out);
  for (const std::string& check : report.checks()) out << "  check: " << check << "\n";
}

void PrintJob(const v1::Job& job, std::ostream& out) {
  out << "job:          " << job.job_id() << "\n"
      << "request:      " << job.request_id() << "\n"
      << "model:        " << job.model_id() << "\n"
      << "method:       " << job.method() << "\n"
      << "state:        " << JobStateName(job.state()) << "\n";
  if (!job.error_message().empty()) out << "error:        " << job.error_message() << "\n";
  out << "progress:     step " << job.step() << "/" << job.total_steps() << ", loss "
      << FormatNumber(job.loss()) << "\n"
      << "forget set:   " << job.forget_examples() << " examples\n"
      << "attempts:     " << job.attempts() << "\n"
      << "accepted:     " << FormatUnixMs(job.accepted_unix_ms()) << "\n"
      << "started:      " << FormatUnixMs(job.started_unix_ms()) << "\n"
      << "finished:     " << FormatUnixMs(job.finished_unix_ms()) << "\n";
  if (job.published_version() > 0) {
    out << "published:    version " << job.published_version() << "\n";
  }
  if (!job.compliance_reference().empty()) {
    out << "compliance:   " << job.compliance_reference() << "\n";
  }
  if (job.has_verification()) PrintVerification(job.verification(), out);
}

ProgressDisplay::ProgressDisplay(bool enabled) : enabled_(enabled), tty_(isatty(STDERR_FILENO)) {}

ProgressDisplay::~ProgressDisplay() { Finish(); }

void ProgressDisplay::Update(const v1::Progress& progress) {
  if (!enabled_) return;
  const int64_t total = progress.total_steps();
  const double fraction =
      total > 0 ? std::clamp(static_cast<double>(progress.step()) / total, 0.0, 1.0) : 0.0;
  constexpr int kBarWidth = 24;
  const int filled = static_cast<int>(fraction * kBarWidth);
  std::string line =
      absl::StrFormat("[%s%s] %3d%%  step %d/%d  loss %s  ETA %s  %s", std::string(filled, '#'),
                      std::string(kBarWidth - filled, '.'), static_cast<int>(fraction * 100),
                      progress.step(), total, FormatNumber(progress.loss()),
                      FormatSeconds(progress.eta_seconds()), progress.phase());
  if (tty_) {
    // \33[K clears the rest of the previous (possibly longer) line.
    std::cerr << "\r" << line << "\33[K" << std::flush;
    line_open_ = true;
    return;
  }
  const int decile = static_cast<int>(fraction * 10);
  if (decile != last_decile_ || progress.phase() != last_phase_) {
    std::cerr << line << std::endl;
    last_decile_ = decile;
    last_phase_ = progress.phase();
  }
}

void ProgressDisplay::Finish() {
  if (line_open_) {
    std::cerr << std::endl;
    line_open_ = false;
  }
}

}  // namespace unlearning::client
