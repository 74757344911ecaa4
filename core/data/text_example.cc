#include "core/data/text_example.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

namespace unlearning::core {
namespace {

using nlohmann::json;

// Reads `obj[key]` as a string if present. Missing = empty; wrong type = error.
absl::Status ReadStringField(const json& obj, const char* key, std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be a string"));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// Reads `obj[key]` as an array of strings if present.
absl::Status ReadStringArrayField(const json& obj, const char* key, std::vector<std::string>* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be an array of strings"));
  }
  for (const json& element : *it) {
    if (!element.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be an array of strings"));
    }
    out->push_back(element.get<std::string>());
  }
  return absl::OkStatus();
}

absl::StatusOr<TextExample> ParseLine(const std::string& line) {
  if (!IsValidUtf8(line)) return absl::InvalidArgumentError("invalid UTF-8");
  json obj = json::parse(line, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return absl::InvalidArgumentError("malformed JSON");
  if (!obj.is_object()) return absl::InvalidArgumentError("not a JSON object");
  TextExample example;
  absl::Status status = ReadStringField(obj, "question", &example.question);
  if (status.ok()) status = ReadStringField(obj, "answer", &example.answer);
  if (status.ok()) status = ReadStringField(obj, "entity", &example.entity);
  if (status.ok()) {
    status = ReadStringArrayField(obj, "paraphrased_questions", &example.paraphrased_questions);
  }
  if (status.ok()) {
    status = ReadStringArrayField(obj, "perturbed_answers", &example.perturbed_answers);
  }
  if (!status.ok()) return status;
  if (example.question.empty()) {
    return absl::InvalidArgumentError("missing or empty \"question\"");
  }
  if (example.answer.empty()) return absl::InvalidArgumentError("missing or empty \"answer\"");
  return example;
}

bool IsBlank(const std::string& line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

}  // namespace

absl::StatusOr<std::vector<TextExample>> ReadJsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<TextExample> examples;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (IsBlank(line)) continue;
    absl::StatusOr<TextExample> example = ParseLine(line);
    if (!example.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": ", example.status().message()));
    }
    examples.push_back(*std::move(example));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("read error on ", path));
  return examples;
}

absl::Status WriteJsonl(const std::string& path, const std::vector<TextExample>& examples) {
  std::string out;
  for (size_t i = 0; i < examples.size(); ++i) {
    const TextExample& e = examples[i];
    bool valid = IsValidUtf8(e.question) && IsValidUtf8(e.answer) && IsValidUtf8(e.entity);
    for (const std::string& s : e.paraphrased_questions) valid = valid && IsValidUtf8(s);
    for (const std::string& s : e.perturbed_answers) valid = valid && IsValidUtf8(s);
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrCat("example ", i, ": invalid UTF-8"));
    }
    json obj = json::object();
    obj["question"] = e.question;
    obj["answer"] = e.answer;
    if (!e.paraphrased_questions.empty()) obj["paraphrased_questions"] = e.paraphrased_questions;
    if (!e.perturbed_answers.empty()) obj["perturbed_answers"] = e.perturbed_answers;
    if (!e.entity.empty()) obj["entity"] = e.entity;
    absl::StrAppend(&out, obj.dump(), "\n");
  }
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) return absl::PermissionDeniedError(absl::StrCat("cannot create ", path));
  file.write(out.data(), static_cast<std::streamsize>(out.size()));
  file.close();
  if (!file) return absl::DataLossError(absl::StrCat("write error on ", path));
  return absl::OkStatus();
}

EncodedExample EncodeQa(const Tokenizer& tokenizer, std::string_view question,
                        std::string_view answer, bool add_eos) {
  EncodedExample encoded;
  if (tokenizer.add_bos()) encoded.ids.push_back(tokenizer.bos_id());
  std::vector<int64_t> prompt = tokenizer.Encode(tokenizer.QaPromptText(question));
  encoded.ids.insert(encoded.ids.end(), prompt.begin(), prompt.end());
  encoded.answer_start = static_cast<int64_t>(encoded.ids.size());
  const std::string end = add_eos ? tokenizer.QaAnswerEnd() : std::string();
  std::string text = answer.empty() ? std::string() : tokenizer.QaAnswerText(answer);
  text += end;
  std::vector<int64_t> answer_ids = tokenizer.Encode(text);
  encoded.ids.insert(encoded.ids.end(), answer_ids.begin(), answer_ids.end());
  if (add_eos && end.empty()) encoded.ids.push_back(tokenizer.eos_id());
  return encoded;
}

TokenBatch Collate(const std::vector<EncodedExample>& examples, int64_t pad_id,
                   int64_t max_length) {
  const int64_t batch = static_cast<int64_t>(examples.size());
  int64_t longest = 1;
  for (const EncodedExample& e : examples) {
    longest = std::max(longest, static_cast<int64_t>(e.ids.size()));
  }
  const int64_t length = std::max<int64_t>(1, std::min(longest, max_length));
  std::vector<int64_t> ids(static_cast<size_t>(batch * length), pad_id);
  std::vector<int64_t> labels(static_cast<size_t>(batch * length), kIgnoreIndex);
  for (int64_t b = 0; b < batch; ++b) {
    const EncodedExample& e = examples[static_cast<size_t>(b)];
    const int64_t n = std::min(static_cast<int64_t>(e.ids.size()), length);
    int64_t* row_ids = ids.data() + b * length;
    int64_t* row_labels = labels.data() + b * length;
    for (int64_t t = 0; t < n; ++t) row_ids[t] = e.ids[static_cast<size_t>(t)];
    // labels[t] = ids[t + 1] when token t + 1 is an answer token inside the
    // (truncated) row.
    for (int64_t t = std::max<int64_t>(0, e.answer_start - 1); t + 1 < n; ++t) {
      row_labels[t] = e.ids[static_cast<size_t>(t + 1)];
    }
  }
  TokenBatch out;
  out.input_ids = torch::tensor(ids, torch::kInt64).view({batch, length});
  out.labels = torch::tensor(labels, torch::kInt64).view({batch, length});
  return out;
}

}  // namespace unlearning::core
