// Internal to core/text/hf_tokenizer*.cc: the parsed form of tokenizer.json and
// tokenizer_config.json that HfTokenizer encodes and decodes with.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

#include "core/text/hf_chat_format.h"
#include "core/text/hf_pretokenizer.h"

namespace unlearning::core::hf_internal {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

struct NormStep {
  enum Kind { kPrepend, kReplace, kNfc } kind;
  std::string from;  // kReplace: the pattern; kPrepend: unused
  std::string to;    // kPrepend: the prefix; kReplace: the replacement
};

struct PreStep {
  enum Kind { kSplit, kByteLevel } kind;
  hf::SplitPattern pattern = hf::SplitPattern::kGpt2;  // kSplit
  bool add_prefix_space = false;                       // kByteLevel
  bool use_regex = false;                              // kByteLevel: split with GPT-2's regex
};

struct DecStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip } kind;
  std::string from{};  // kReplace: the pattern; kStrip: the stripped content
  std::string to{};    // kReplace
  int64_t start = 0, stop = 0;
};

struct MergeValue {
  int32_t rank;
  int32_t id;  // id of the merged token
};

constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 17;

struct Model {
  std::string tokenizer_json, config_json;  // as loaded, for Save
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> is_added, is_special;  // by id
  absl::flat_hash_map<std::string, int32_t> vocab;
  absl::flat_hash_map<uint64_t, MergeValue> merges;
  std::vector<AddedToken> added;
  std::array<std::vector<int32_t>, 256> added_by_first_byte;  // indices into added, longest first
  absl::flat_hash_map<std::string, int32_t> added_ids;
  std::vector<NormStep> normalizers;
  std::vector<PreStep> pre_tokenizers;
  std::vector<DecStep> decoders;
  bool byte_level = false;  // a ByteLevel pre-tokenizer maps bytes to symbols
  std::array<int32_t, 256> byte_ids{};
  std::array<int32_t, 256> fallback_ids{};  // <0xNN> tokens, -1 if absent
  bool byte_fallback = false;
  bool ignore_merges = false;
  bool fuse_unk = false;
  int32_t unk_id = -1;
  int64_t vocab_size = 0;
  int64_t bos = -1, eos = -1, pad = -1;
  bool add_bos = false;
  std::string chat_template;
  std::optional<ChatTemplate> chat;  // the recognised format of chat_template, if any

  mutable absl::Mutex mu;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache ABSL_GUARDED_BY(mu);
};

// Debian's abseil has its own string_view (not std::string_view).
inline absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

inline uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Parses both files into `m` (a fresh Model). kInvalidArgument naming `origin`/<file> and the key
// for malformed or unsupported content.
absl::Status ParseModel(const std::string& tokenizer_json, const std::string& config_json,
                        const std::string& origin, Model* m);

}  // namespace unlearning::core::hf_internal
