// UTF-8 helpers shared by the tokenizers, the data readers and text streaming. No LibTorch.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace unlearning::core {

// True if `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

// `s` with every maximal invalid UTF-8 subsequence replaced by U+FFFD (the Unicode "substitution
// of maximal subparts" practice, as Python's errors="replace"); valid input comes back unchanged.
// A model's bytes become text this way before they are sent as a protobuf string.
std::string ToValidUtf8(std::string_view s);

// Length of the longest prefix of `bytes` that does not end inside a character that the next
// bytes could still complete: bytes.size() unless the last 1 to 3 bytes are the start of a
// multi-byte sequence that is not finished yet (a lead byte announcing more bytes than follow it).
// Invalid bytes count as complete (ToValidUtf8 turns them into U+FFFD).
size_t CompleteUtf8Prefix(std::string_view bytes);

}  // namespace unlearning::core
