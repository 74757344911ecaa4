#include "client/inputs.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

namespace unlearning::client {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

absl::Status LineError(const std::string& path, int line, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", message));
}

absl::StatusOr<std::ifstream> Open(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  return in;
}

// Appends the string or array-of-strings `value` of key `key` to `out`.
absl::Status AppendStrings(const nlohmann::json& value, const std::string& key,
                           google::protobuf::RepeatedPtrField<std::string>* out) {
  if (value.is_string()) {
    *out->Add() = value.get<std::string>();
    return absl::OkStatus();
  }
  if (!value.is_array())
    return absl::InvalidArgumentError(absl::StrCat("'", key, "' must be an array of strings"));
  for (const auto& item : value) {
    if (!item.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("'", key, "' must be an array of strings"));
    }
    *out->Add() = item.get<std::string>();
  }
  return absl::OkStatus();
}

absl::Status RequireString(const nlohmann::json& object, const char* key, std::string* out) {
  auto it = object.find(key);
  if (it == object.end()) return absl::InvalidArgumentError(absl::StrCat("missing \"", key, "\""));
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" must be a string"));
  }
  *out = it->get<std::string>();
  if (absl::StripAsciiWhitespace(*out).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is empty"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::TextExample> ParseExample(const nlohmann::json& object) {
  if (!object.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  v1::TextExample example;
  if (auto s = RequireString(object, "question", example.mutable_question()); !s.ok()) return s;
  if (auto s = RequireString(object, "answer", example.mutable_answer()); !s.ok()) return s;
  for (const char* key : {"paraphrased_questions", "paraphrased_question"}) {
    if (auto it = object.find(key); it != object.end()) {
      if (auto s = AppendStrings(*it, key, example.mutable_paraphrased_questions()); !s.ok()) {
        return s;
      }
    }
  }
  for (const char* key : {"perturbed_answers", "perturbed_answer"}) {
    if (auto it = object.find(key); it != object.end()) {
      if (auto s = AppendStrings(*it, key, example.mutable_perturbed_answers()); !s.ok()) return s;
    }
  }
  return example;
}

// The message type holding the parameters of `method` (FlatParams, ...), or
// nullptr.
const FieldDescriptor* MethodField(const std::string& method) {
  const FieldDescriptor* field = v1::MethodParams::descriptor()->FindFieldByName(method);
  if (field == nullptr || field->containing_oneof() == nullptr ||
      field->type() != FieldDescriptor::TYPE_MESSAGE) {
    return nullptr;
  }
  return field;
}

absl::Status SetEnum(const std::string& key, const std::string& value, Message* message,
                     const FieldDescriptor* field) {
  const google::protobuf::EnumDescriptor* type = field->enum_type();
  // Accept the full name, the name without the type prefix, and a few short
  // aliases.
  std::string upper = absl::AsciiStrToUpper(value);
  std::string prefix = absl::AsciiStrToUpper(field->name()) + "_";
  static const std::pair<const char*, const char*> kAliases[] = {
      {"JS", "JENSEN_SHANNON"}, {"TV", "TOTAL_VARIATION"}, {"JSD", "JENSEN_SHANNON"}};
  for (const auto& [alias, full] : kAliases) {
    if (upper == alias) upper = full;
  }
  for (const std::string& candidate : {upper, prefix + upper}) {
    const google::protobuf::EnumValueDescriptor* v = type->FindValueByName(candidate);
    if (v != nullptr) {
      message->GetReflection()->SetEnum(message, field, v);
      return absl::OkStatus();
    }
  }
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    std::string name = type->value(i)->name();
    if (absl::EndsWith(name, "_UNSPECIFIED")) continue;
    names.push_back(absl::AsciiStrToLower(absl::StripPrefix(name, prefix)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--param ", key, "=", value, ": expected one of ", absl::StrJoin(names, ", ")));
}

absl::Status SetScalar(const std::string& key, const std::string& value, Message* message,
                       const FieldDescriptor* field) {
  const Reflection* reflection = message->GetReflection();
  auto bad = [&](const char* type) {
    return absl::InvalidArgumentError(
        absl::StrCat("--param ", key, "=", value, ": expected ", type));
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(value, &v)) return bad("a number");
      reflection->SetDouble(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(value, &v)) return bad("a number");
      reflection->SetFloat(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("an integer");
      reflection->SetInt32(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("an integer");
      reflection->SetInt64(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("a non-negative integer");
      reflection->SetUInt32(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("a non-negative integer");
      reflection->SetUInt64(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(value, &v)) return bad("true or false");
      reflection->SetBool(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      reflection->SetString(message, field, value);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_ENUM:
      return SetEnum(key, value, message, field);
    default:
      return absl::InvalidArgumentError(absl::StrCat("--param ", key, ": unsupported field type"));
  }
}

}  // namespace

absl::StatusOr<std::vector<v1::TextExample>> ReadExamplesJsonl(const std::string& path) {
  auto in = Open(path);
  if (!in.ok()) return in.status();
  std::vector<v1::TextExample> examples;
  std::string line;
  int line_number = 0;
  while (std::getline(*in, line)) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    nlohmann::json object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded()) return LineError(path, line_number, "invalid JSON");
    auto example = ParseExample(object);
    if (!example.ok()) return LineError(path, line_number, std::string(example.status().message()));
    examples.push_back(*std::move(example));
  }
  if (in->bad()) return absl::DataLossError(absl::StrCat("error reading '", path, "'"));
  if (examples.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no examples (empty file)"));
  }
  return examples;
}

absl::StatusOr<std::vector<std::string>> ReadTemplates(const std::string& path) {
  auto in = Open(path);
  if (!in.ok()) return in.status();
  const bool jsonl = absl::EndsWith(path, ".jsonl") || absl::EndsWith(path, ".json");
  std::vector<std::string> templates;
  std::string line;
  int line_number = 0;
  while (std::getline(*in, line)) {
    ++line_number;
    absl::string_view stripped = absl::StripAsciiWhitespace(line);
    if (stripped.empty()) continue;
    if (!jsonl) {
      templates.emplace_back(stripped);
      continue;
    }
    nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) return LineError(path, line_number, "invalid JSON");
    if (value.is_object()) {
      for (const char* key : {"answer", "template", "text"}) {
        if (auto it = value.find(key); it != value.end()) {
          value = *it;
          break;
        }
      }
    }
    if (!value.is_string() || value.get<std::string>().empty()) {
      return LineError(path, line_number,
                       "expected a non-empty JSON string or an object with \"answer\"");
    }
    templates.push_back(value.get<std::string>());
  }
  if (templates.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no templates"));
  return templates;
}

std::vector<std::string> MethodNames() {
  std::vector<std::string> names;
  const google::protobuf::OneofDescriptor* oneof =
      v1::MethodParams::descriptor()->FindOneofByName("method");
  for (int i = 0; i < oneof->field_count(); ++i) {
    if (oneof->field(i)->name() != "named") names.push_back(oneof->field(i)->name());
  }
  return names;
}

std::vector<std::string> ValidParamKeys(const std::string& method) {
  const FieldDescriptor* method_field = MethodField(method);
  if (method_field == nullptr) return {};
  std::vector<std::string> keys;
  const google::protobuf::Descriptor* type = method_field->message_type();
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      for (int j = 0; j < field->message_type()->field_count(); ++j) {
        keys.push_back(field->message_type()->field(j)->name());
      }
    } else {
      keys.push_back(field->name());
    }
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

absl::StatusOr<v1::Threshold> ParseThresholdSpec(const std::string& spec) {
  const size_t a = spec.find(':');
  const size_t b = a == std::string::npos ? a : spec.find(':', a + 1);
  if (b == std::string::npos || a == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threshold '", spec,
                     "': expected FIGURE:COMPARISON:BOUND, e.g. acc_f:ratio_at_most:0.2"));
  }
  v1::Threshold t;
  t.set_figure(spec.substr(0, a));
  const std::string comparison = absl::AsciiStrToUpper(spec.substr(a + 1, b - a - 1));
  v1::Comparison c;
  if (!v1::Comparison_Parse(absl::StrCat("COMPARISON_", comparison), &c) ||
      c == v1::COMPARISON_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--threshold '", spec,
        "': comparison must be ratio_at_most, ratio_at_least, at_most, at_least or abs_at_most"));
  }
  t.set_comparison(c);
  double bound = 0;
  if (!absl::SimpleAtod(spec.substr(b + 1), &bound)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threshold '", spec, "': bound '", spec.substr(b + 1), "' is not a number"));
  }
  t.set_bound(bound);
  return t;
}

absl::StatusOr<v1::MethodParams> BuildMethodParams(const std::string& method,
                                                   const std::vector<std::string>& params) {
  const FieldDescriptor* method_field = MethodField(method);
  if (method_field == nullptr || method == "named") {
    // A method without a typed message in this client's API version: send it by name with its
    // parameters as JSON (values that parse as JSON are sent as such, others as strings). The
    // server validates the keys.
    if (method.empty() || method == "named") {
      return absl::InvalidArgumentError(
          absl::StrCat("give a method name (typed: ", absl::StrJoin(MethodNames(), ", "),
                       "; any other name is sent as method.named)"));
    }
    nlohmann::json json = nlohmann::json::object();
    for (const std::string& param : params) {
      size_t eq = param.find('=');
      if (eq == std::string::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--param '", param, "': expected key=value"));
      }
      std::string key(absl::StripAsciiWhitespace(param.substr(0, eq)));
      std::string value(absl::StripAsciiWhitespace(param.substr(eq + 1)));
      nlohmann::json parsed = nlohmann::json::parse(value, nullptr, false);
      json[key] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
    }
    v1::MethodParams result;
    result.mutable_named()->set_name(method);
    result.mutable_named()->set_params_json(json.dump());
    return result;
  }
  v1::MethodParams result;
  Message* method_message = result.GetReflection()->MutableMessage(&result, method_field);
  for (const std::string& param : params) {
    size_t eq = param.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--param '", param, "': expected key=value"));
    }
    std::string key(absl::StripAsciiWhitespace(param.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(param.substr(eq + 1)));
    // Look the key up in the method's own message, then in each nested message
    // (training).
    Message* target = nullptr;
    const FieldDescriptor* field = nullptr;
    const google::protobuf::Descriptor* type = method_message->GetDescriptor();
    if (const FieldDescriptor* f = type->FindFieldByName(key);
        f != nullptr && f->type() != FieldDescriptor::TYPE_MESSAGE) {
      target = method_message;
      field = f;
    }
    for (int i = 0; field == nullptr && i < type->field_count(); ++i) {
      const FieldDescriptor* nested = type->field(i);
      if (nested->type() != FieldDescriptor::TYPE_MESSAGE || nested->is_repeated()) continue;
      if (const FieldDescriptor* f = nested->message_type()->FindFieldByName(key); f != nullptr) {
        target = method_message->GetReflection()->MutableMessage(method_message, nested);
        field = f;
      }
    }
    if (field == nullptr || field->is_repeated()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown parameter '", key, "' for method ", method,
                       " (valid: ", absl::StrJoin(ValidParamKeys(method), ", "), ")"));
    }
    if (auto s = SetScalar(key, value, target, field); !s.ok()) return s;
  }
  return result;
}

std::string RandomRequestId() {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device());
  uint64_t hi = rng();
  uint64_t lo = rng();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;                  // version 4
  lo = (lo & ~(0xC000ULL << 48)) | (0x8000ULL << 48);  // RFC 4122 variant
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF,
                         lo >> 48, lo & 0xFFFFFFFFFFFFULL);
}

}  // namespace unlearning::client
