// Parsing one message of a stream without letting a bad string end the stream. proto3 refuses a
// whole message whose string field holds bytes that are not UTF-8; on a bidirectional stream the
// generated code would then end the call, losing every other request on it. ParseOrNameInvalidUtf8
// parses the message with each such string cleared and names the fields, so that the server
// rejects that one request (INVALID_ARGUMENT) and keeps reading.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <google/protobuf/message.h>

namespace unlearning::server {

// Parses `bytes` into `message` (cleared first). Returns the paths of the string fields that were
// not valid UTF-8 and were cleared, in wire order (e.g. "submit.text.forget_set[2].answer");
// empty when the message parsed as it is. InvalidArgument when `bytes` is not a serialized message
// of this type at all (bad wire format, nesting deeper than protobuf's limit).
absl::StatusOr<std::vector<std::string>> ParseOrNameInvalidUtf8(absl::string_view bytes,
                                                                google::protobuf::Message* message);

}  // namespace unlearning::server
