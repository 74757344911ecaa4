#include "core/text/hf_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <queue>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"

#include "core/common/status_macros.h"
#include "core/text/hf_model.h"
#include "core/text/hf_pretokenizer.h"

namespace unlearning::core {
namespace hf_internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Encoding

// Ids of one pre-token by BPE (no cache).
std::vector<int32_t> BpeWord(const Model& m, std::string_view word) {
  std::vector<int32_t> ids;
  if (m.byte_level) {
    if (m.ignore_merges) {
      std::string mapped;
      for (char ch : word) mapped += hf::ByteToUnicode()[static_cast<unsigned char>(ch)];
      if (auto it = m.vocab.find(mapped); it != m.vocab.end()) return {it->second};
    }
    ids.reserve(word.size());
    for (char ch : word) ids.push_back(m.byte_ids[static_cast<unsigned char>(ch)]);
  } else {
    if (m.ignore_merges) {
      if (auto it = m.vocab.find(AbslView(word)); it != m.vocab.end()) return {it->second};
    }
    ids.reserve(word.size());
    size_t pos = 0;
    bool last_unk = false;
    while (pos < word.size()) {
      const size_t len = hf::DecodeUtf8At(word, pos).second;
      const std::string_view ch = word.substr(pos, len);
      pos += len;
      if (auto it = m.vocab.find(AbslView(ch)); it != m.vocab.end()) {
        ids.push_back(it->second);
        last_unk = false;
        continue;
      }
      bool all = m.byte_fallback;
      for (char byte : ch) all = all && m.fallback_ids[static_cast<unsigned char>(byte)] >= 0;
      if (all) {
        for (char byte : ch) ids.push_back(m.fallback_ids[static_cast<unsigned char>(byte)]);
        last_unk = false;
      } else if (m.unk_id >= 0 && !(m.fuse_unk && last_unk)) {
        ids.push_back(m.unk_id);
        last_unk = true;
      }
    }
  }
  if (ids.size() < 2) return ids;

  // Merge the pair of lowest rank, leftmost first, until no pair merges.
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const auto n = static_cast<int32_t>(ids.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) symbols[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1};
  std::vector<Candidate> storage;
  storage.reserve(n);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap(
      std::greater<Candidate>(), std::move(storage));
  const auto consider = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = m.merges.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != m.merges.end()) heap.push({it->second.rank, pos, it->second.id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& s = symbols[c.pos];
    if (s.id < 0 || s.next < 0) continue;
    auto it = m.merges.find(PairKey(s.id, symbols[s.next].id));
    if (it == m.merges.end() || it->second.rank != c.rank) continue;  // stale
    Symbol& right = symbols[s.next];
    s.id = c.id;
    right.id = -1;
    s.next = right.next;
    if (s.next >= 0) symbols[s.next].prev = c.pos;
    if (s.prev >= 0) consider(s.prev);
    consider(c.pos);
  }
  ids.clear();
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

void EncodeWord(const Model& m, std::string_view word, std::vector<int64_t>* out) {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    absl::MutexLock lock(&m.mu);
    auto it = m.cache.find(AbslView(word));
    if (it != m.cache.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = BpeWord(m, word);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    absl::MutexLock lock(&m.mu);
    if (m.cache.size() >= kMaxCacheEntries) m.cache.clear();
    m.cache.emplace(std::string(word), std::move(ids));
  }
}

std::string Normalize(const Model& m, std::string_view section) {
  std::string s(section);
  for (const NormStep& step : m.normalizers) {
    switch (step.kind) {
      case NormStep::kPrepend:
        if (!s.empty()) s.insert(0, step.to);
        break;
      case NormStep::kReplace:
        s = absl::StrReplaceAll(s, {{step.from, step.to}});
        break;
      case NormStep::kNfc:
        s = hf::NormalizeNfc(s);
        break;
    }
  }
  return s;
}

void EncodeSection(const Model& m, std::string_view section, std::vector<int64_t>* out) {
  const std::string normalized = Normalize(m, section);
  if (normalized.empty()) return;
  std::vector<std::string> pieces = {normalized};
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const PreStep& step : m.pre_tokenizers) {
    std::vector<std::string> next;
    for (std::string& piece : pieces) {
      if (step.kind == PreStep::kByteLevel && step.add_prefix_space &&
          (piece.empty() || piece[0] != ' ')) {
        piece.insert(0, " ");
      }
      const bool split = step.kind == PreStep::kSplit || step.use_regex;
      if (!split) {
        next.push_back(std::move(piece));
        continue;
      }
      ranges.clear();
      hf::SplitByPattern(step.kind == PreStep::kSplit ? step.pattern : hf::SplitPattern::kGpt2,
                         piece, &ranges);
      for (auto [b, e] : ranges) next.emplace_back(piece, b, e - b);
    }
    pieces = std::move(next);
  }
  for (const std::string& piece : pieces) EncodeWord(m, piece, out);
}

bool IsJsWhiteSpace(char32_t cp) { return hf::IsWhiteSpace(cp) || cp == 0xFEFF; }

std::string_view TrimEnd(std::string_view s) {
  while (!s.empty()) {
    size_t start = s.size() - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (!IsJsWhiteSpace(hf::DecodeUtf8At(s, start).first)) break;
    s.remove_suffix(s.size() - start);
  }
  return s;
}

std::string_view TrimStart(std::string_view s) {
  while (!s.empty()) {
    auto [cp, len] = hf::DecodeUtf8At(s, 0);
    if (!IsJsWhiteSpace(cp)) break;
    s.remove_prefix(len);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Decoding

struct DecPiece {
  std::string text;
  bool added;
};

std::optional<unsigned char> ByteToken(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return std::nullopt;
  int value = 0;
  for (char ch : t.substr(3, 2)) {
    int digit;
    if (ch >= '0' && ch <= '9') {
      digit = ch - '0';
    } else if (ch >= 'A' && ch <= 'F') {
      digit = ch - 'A' + 10;
    } else if (ch >= 'a' && ch <= 'f') {
      digit = ch - 'a' + 10;
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return static_cast<unsigned char>(value);
}

std::vector<DecPiece> ApplyDecoder(const DecStep& step, std::vector<DecPiece> pieces) {
  std::vector<DecPiece> out;
  switch (step.kind) {
    case DecStep::kByteLevel: {
      std::string bytes;
      bool open = false;
      for (DecPiece& p : pieces) {
        if (p.added) {
          if (open) out.push_back({std::move(bytes), false});
          bytes.clear();
          open = false;
          out.push_back(std::move(p));
          continue;
        }
        open = true;
        size_t pos = 0;
        while (pos < p.text.size()) {
          auto [cp, len] = hf::DecodeUtf8At(p.text, pos);
          const int b = cp == hf::kInvalidByte ? -1 : hf::UnicodeToByte(cp);
          if (b >= 0) {
            bytes.push_back(static_cast<char>(b));
          } else {
            bytes.append(p.text, pos, len);
          }
          pos += len;
        }
      }
      if (open) out.push_back({std::move(bytes), false});
      return out;
    }
    case DecStep::kReplace:
      for (DecPiece& p : pieces) p.text = absl::StrReplaceAll(p.text, {{step.from, step.to}});
      return pieces;
    case DecStep::kByteFallback: {
      std::string bytes;
      for (DecPiece& p : pieces) {
        if (std::optional<unsigned char> b = ByteToken(p.text); b && !p.added) {
          bytes.push_back(static_cast<char>(*b));
          continue;
        }
        if (!bytes.empty()) out.push_back({std::move(bytes), false});
        bytes.clear();
        out.push_back(std::move(p));
      }
      if (!bytes.empty()) out.push_back({std::move(bytes), false});
      return out;
    }
    case DecStep::kFuse: {
      std::string all;
      for (const DecPiece& p : pieces) all += p.text;
      out.push_back({std::move(all), false});
      return out;
    }
    case DecStep::kStrip:
      for (DecPiece& p : pieces) {
        std::string_view t = p.text;
        for (int64_t i = 0; i < step.start && t.substr(0, step.from.size()) == step.from; ++i) {
          t.remove_prefix(step.from.size());
        }
        for (int64_t i = 0; i < step.stop && t.size() >= step.from.size() &&
                            t.substr(t.size() - step.from.size()) == step.from;
             ++i) {
          t.remove_suffix(step.from.size());
        }
        p.text = std::string(t);
      }
      return pieces;
  }
  return pieces;
}

}  // namespace
}  // namespace hf_internal

using hf_internal::Model;

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("tokenizer: no ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat("tokenizer: cannot read ", path));
  return buffer.str();
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("tokenizer: cannot write ", path));
  out << text;
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("tokenizer: write failed: ", path));
  return absl::OkStatus();
}

}  // namespace

HfTokenizer::HfTokenizer() : model_(std::make_unique<Model>()) {}
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(const std::string& dir) {
  UNL_ASSIGN_OR_RETURN(std::string tokenizer_json,
                       ReadFile(absl::StrCat(dir, "/", kTokenizerFile)));
  UNL_ASSIGN_OR_RETURN(std::string config_json, ReadFile(absl::StrCat(dir, "/", kConfigFile)));
  return FromJson(std::move(tokenizer_json), std::move(config_json), dir);
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(std::string tokenizer_json,
                                                                   std::string config_json,
                                                                   std::string_view origin) {
  std::unique_ptr<HfTokenizer> tok(new HfTokenizer());
  Model* m = tok->model_.get();
  UNL_RETURN_IF_ERROR(hf_internal::ParseModel(tokenizer_json, config_json, std::string(origin), m));
  m->tokenizer_json = std::move(tokenizer_json);
  m->config_json = std::move(config_json);
  return tok;
}

std::vector<int64_t> HfTokenizer::Encode(std::string_view text) const {
  const Model& m = *model_;
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  // Split out the added tokens (leftmost, longest first), then encode the text between them.
  struct Section {
    std::string_view text;
    int32_t added = -1;  // index into m.added
  };
  std::vector<Section> sections;
  size_t start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    int32_t found = -1;
    for (int32_t index : m.added_by_first_byte[static_cast<unsigned char>(text[pos])]) {
      if (text.compare(pos, m.added[index].content.size(), m.added[index].content) == 0) {
        found = index;
        break;
      }
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    if (pos > start) sections.push_back({text.substr(start, pos - start)});
    sections.push_back({std::string_view(), found});
    pos += m.added[found].content.size();
    start = pos;
  }
  if (start < text.size()) sections.push_back({text.substr(start)});
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].added < 0) continue;
    const hf_internal::AddedToken& t = m.added[sections[i].added];
    if (t.lstrip && i > 0 && sections[i - 1].added < 0) {
      sections[i - 1].text = hf_internal::TrimEnd(sections[i - 1].text);
    }
    if (t.rstrip && i + 1 < sections.size() && sections[i + 1].added < 0) {
      sections[i + 1].text = hf_internal::TrimStart(sections[i + 1].text);
    }
  }
  for (const Section& section : sections) {
    if (section.added >= 0) {
      ids.push_back(m.added[section.added].id);
    } else if (!section.text.empty()) {
      hf_internal::EncodeSection(m, section.text, &ids);
    }
  }
  return ids;
}

std::string HfTokenizer::Decode(const std::vector<int64_t>& ids) const {
  const Model& m = *model_;
  std::vector<hf_internal::DecPiece> pieces;
  pieces.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= m.vocab_size || m.is_special[id]) continue;
    if (m.id_to_token[id].empty()) continue;  // a hole in the vocabulary
    pieces.push_back({m.id_to_token[id], m.is_added[id] != 0});
  }
  for (const hf_internal::DecStep& step : m.decoders) {
    pieces = hf_internal::ApplyDecoder(step, std::move(pieces));
  }
  std::string text;
  for (const hf_internal::DecPiece& p : pieces) text += p.text;
  return text;
}

int64_t HfTokenizer::vocab_size() const { return model_->vocab_size; }
int64_t HfTokenizer::bos_id() const { return model_->bos; }
int64_t HfTokenizer::eos_id() const { return model_->eos; }
int64_t HfTokenizer::pad_id() const { return model_->pad; }
bool HfTokenizer::add_bos_token() const { return model_->add_bos; }
const std::string& HfTokenizer::chat_template() const { return model_->chat_template; }

const ChatTemplate* HfTokenizer::chat_format() const {
  return model_->chat ? &*model_->chat : nullptr;
}

std::string HfTokenizer::QaPromptText(std::string_view question) const {
  return model_->chat ? model_->chat->Prompt(question) : QaPrompt(question);
}

std::string HfTokenizer::QaAnswerText(std::string_view answer) const {
  if (!model_->chat) return std::string(answer);
  std::string text = model_->chat->AnswerText(answer);
  if (model_->chat->format() == ChatFormat::kLlama2 && !text.empty() && text[0] == ' ') {
    text.erase(0, 1);
  }
  return text;
}

std::vector<int64_t> HfTokenizer::stop_ids() const {
  std::vector<int64_t> ids = {eos_id()};
  if (model_->chat) {
    if (std::optional<int64_t> end = TokenId(model_->chat->EndOfTurnToken());
        end && *end != ids[0]) {
      ids.push_back(*end);
    }
  }
  return ids;
}

std::string HfTokenizer::QaAnswerEnd() const {
  return model_->chat ? model_->chat->AnswerEnd() : std::string();
}

std::optional<int64_t> HfTokenizer::TokenId(std::string_view token) const {
  if (auto it = model_->added_ids.find(hf_internal::AbslView(token)); it != model_->added_ids.end())
    return it->second;
  if (auto it = model_->vocab.find(hf_internal::AbslView(token)); it != model_->vocab.end())
    return it->second;
  return std::nullopt;
}

absl::Status HfTokenizer::Save(const std::string& dir) const {
  UNL_RETURN_IF_ERROR(WriteFile(absl::StrCat(dir, "/", kTokenizerFile), model_->tokenizer_json));
  return WriteFile(absl::StrCat(dir, "/", kConfigFile), model_->config_json);
}

}  // namespace unlearning::core
