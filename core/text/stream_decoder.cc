#include "core/text/stream_decoder.h"

#include <algorithm>

#include "core/text/utf8.h"

namespace unlearning::core {

std::string StreamDecoder::Push(int64_t id) {
  ids_.push_back(id);
  const std::string text = tokenizer_.Decode(
      std::vector<int64_t>(ids_.begin() + static_cast<std::ptrdiff_t>(prefix_offset_), ids_.end()));
  const size_t complete = CompleteUtf8Prefix(text);
  std::string out;
  if (complete > emitted_)
    out = ToValidUtf8(std::string_view(text).substr(emitted_, complete - emitted_));
  emitted_ = std::max(emitted_, complete);
  if (complete == text.size()) {
    // A clean boundary: the next window starts at the previous boundary, so the next token is
    // decoded after at least one token of left context, all of whose text has been emitted. The
    // window moves only if that context decodes to some text: after a token that decodes to
    // nothing (a special token) a Strip decoder would drop the next token's leading space.
    std::string context = tokenizer_.Decode(
        std::vector<int64_t>(ids_.begin() + static_cast<std::ptrdiff_t>(read_offset_), ids_.end()));
    if (!context.empty()) {
      prefix_offset_ = read_offset_;
      emitted_ = context.size();
    } else {
      emitted_ = text.size();
    }
    read_offset_ = ids_.size();
  }
  return out;
}

std::string StreamDecoder::Finish() {
  const std::string text = tokenizer_.Decode(
      std::vector<int64_t>(ids_.begin() + static_cast<std::ptrdiff_t>(prefix_offset_), ids_.end()));
  std::string out =
      text.size() > emitted_ ? ToValidUtf8(std::string_view(text).substr(emitted_)) : "";
  prefix_offset_ = read_offset_ = ids_.size();
  emitted_ = 0;
  return out;
}

}  // namespace unlearning::core
