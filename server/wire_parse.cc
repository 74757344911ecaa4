#include "server/wire_parse.h"

#include <map>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>

#include "core/data/text_example.h"

namespace unlearning::server {
namespace {

namespace pb = google::protobuf;

// Protobuf's default recursion limit for parsing.
constexpr int kMaxDepth = 100;

// `bytes` (a serialized `type`) re-serialized without the string fields that are not valid UTF-8;
// their paths are appended to `invalid`. nullopt when `bytes` is not wire format.
std::optional<std::string> DropInvalidUtf8(const pb::Descriptor& type, absl::string_view bytes,
                                           const std::string& prefix, int depth,
                                           std::vector<std::string>* invalid) {
  if (depth > kMaxDepth) return std::nullopt;
  pb::UnknownFieldSet fields;
  if (!fields.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return std::nullopt;
  pb::UnknownFieldSet kept;
  std::map<int, int> occurrences;  // per field number: the index of a repeated field's element
  for (int i = 0; i < fields.field_count(); ++i) {
    const pb::UnknownField& field = fields.field(i);
    const pb::FieldDescriptor* descriptor = type.FindFieldByNumber(field.number());
    if (descriptor == nullptr || field.type() != pb::UnknownField::TYPE_LENGTH_DELIMITED) {
      kept.AddField(field);  // scalars, and fields this server does not know, pass unchanged
      continue;
    }
    const int index = occurrences[field.number()]++;
    std::string path =
        prefix.empty() ? descriptor->name() : absl::StrCat(prefix, ".", descriptor->name());
    if (descriptor->is_repeated()) absl::StrAppend(&path, "[", index, "]");
    if (descriptor->type() == pb::FieldDescriptor::TYPE_STRING) {
      if (core::IsValidUtf8(field.length_delimited())) {
        kept.AddField(field);
      } else {
        invalid->push_back(std::move(path));
      }
    } else if (descriptor->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      std::optional<std::string> inner = DropInvalidUtf8(
          *descriptor->message_type(), field.length_delimited(), path, depth + 1, invalid);
      if (!inner.has_value()) return std::nullopt;
      kept.AddLengthDelimited(field.number(), *inner);
    } else {
      kept.AddField(field);  // bytes, packed scalars
    }
  }
  std::string out;
  if (!kept.SerializeToString(&out)) return std::nullopt;
  return out;
}

absl::Status NotAMessage(const pb::Message& message) {
  return absl::InvalidArgumentError(absl::StrCat(
      "the stream message is not a serialized ", message.GetDescriptor()->full_name(),
      " (protobuf wire format could not be parsed): send messages generated from the service's "
      ".proto files"));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseOrNameInvalidUtf8(absl::string_view bytes,
                                                                pb::Message* message) {
  message->Clear();
  if (message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return std::vector<std::string>();
  }
  std::vector<std::string> invalid;
  std::optional<std::string> cleaned =
      DropInvalidUtf8(*message->GetDescriptor(), bytes, "", 0, &invalid);
  message->Clear();
  if (!cleaned.has_value() || invalid.empty() || !message->ParseFromString(*cleaned)) {
    message->Clear();
    return NotAMessage(*message);
  }
  return invalid;
}

}  // namespace unlearning::server
