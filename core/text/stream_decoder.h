// Incremental detokenisation for streaming: turns generated token ids into text pieces that hold
// only complete UTF-8 characters and add up to the decoding of all the ids.
//
// Decoding one token at a time is wrong twice over: a byte-fallback tokenizer (Llama 2, Mistral)
// spreads one CJK character or emoji over several <0xNN> tokens, so single tokens decode to lone
// bytes, and its Strip decoder drops the leading space of every token decoded alone ("▁world" ->
// "world"). As Hugging Face's streamers and vLLM's detokenizer do, each new token is decoded with
// the tokens since the last emitted boundary in front of it, and only the text that is new and
// complete is emitted; the bytes of an unfinished character wait for the tokens that finish it.
// Bytes that can never form a character are emitted as U+FFFD. Cost per token: one Decode of a
// few tokens.
//
// Example:
//   StreamDecoder stream(tokenizer);
//   for (int64_t id : generated) send(stream.Push(id));   // each piece may be empty
//   send(stream.Finish());
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/text/tokenizer.h"

namespace unlearning::core {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  // Adds one generated id; returns the text it completes (valid UTF-8, possibly empty).
  std::string Push(int64_t id);
  // The text still held back (an unfinished character at the end: U+FFFD), valid UTF-8. The
  // pieces of Push and Finish add up to ToValidUtf8(tokenizer.Decode(ids)) for every tokenizer
  // whose Decode of a sequence extends the Decode of its prefix (all supported ones).
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  std::vector<int64_t> ids_;
  size_t prefix_offset_ = 0;  // first id of the decoding window
  size_t read_offset_ = 0;    // ids before this one are fully emitted
  size_t emitted_ = 0;        // bytes of Decode(ids_[prefix_offset_:]) already emitted
};

}  // namespace unlearning::core
