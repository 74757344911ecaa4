// Parsing of tokenizer.json and tokenizer_config.json into hf_internal::Model.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include <nlohmann/json.hpp>

#include "core/common/status_macros.h"
#include "core/text/hf_model.h"
#include "core/text/hf_pretokenizer.h"
#include "core/text/hf_tokenizer.h"

namespace unlearning::core::hf_internal {
namespace {

using json = nlohmann::json;

// Sequences inside sequences: deeper than any real file, shallow enough for the stack.
constexpr int kMaxNesting = 8;

// ---------------------------------------------------------------------------------------------
// Loading

class Parser {
 public:
  explicit Parser(std::string origin) : origin_(std::move(origin)) {}

  absl::Status Bad(const std::string& path, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(origin_, ": ", path, ": ", what));
  }

  // obj[key] if obj is an object holding key and the value is not null; nullptr otherwise.
  static const json* Find(const json& obj, const char* key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<std::string> String(const json& obj, const char* key,
                                     const std::string& path) const {
    const json* v = Find(obj, key);
    if (v == nullptr) return Bad(absl::StrCat(path, ".", key), "missing");
    if (!v->is_string()) return Bad(absl::StrCat(path, ".", key), "not a string");
    return v->get<std::string>();
  }

  absl::StatusOr<bool> Bool(const json& obj, const char* key, bool fallback,
                            const std::string& path) const {
    const json* v = Find(obj, key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return Bad(absl::StrCat(path, ".", key), "not a boolean");
    return v->get<bool>();
  }

  absl::StatusOr<int64_t> Int(const json& obj, const char* key, const std::string& path) const {
    const json* v = Find(obj, key);
    if (v == nullptr) return Bad(absl::StrCat(path, ".", key), "missing");
    if (!v->is_number_integer()) return Bad(absl::StrCat(path, ".", key), "not an integer");
    return v->get<int64_t>();
  }

  absl::StatusOr<std::string> Type(const json& obj, const std::string& path) const {
    if (!obj.is_object()) return Bad(path, "not an object");
    return String(obj, "type", path);
  }

  // {"String": s} patterns only (a "Regex" pattern is refused).
  absl::StatusOr<std::string> StringPattern(const json& obj, const std::string& path) const {
    const json* pattern = Find(obj, "pattern");
    const std::string p = absl::StrCat(path, ".pattern");
    if (pattern == nullptr || !pattern->is_object()) return Bad(p, "missing or not an object");
    if (Find(*pattern, "Regex") != nullptr) return Bad(p, "Regex patterns are not supported here");
    UNL_ASSIGN_OR_RETURN(std::string s, String(*pattern, "String", p));
    if (s.empty()) return Bad(absl::StrCat(p, ".String"), "empty");
    return s;
  }

 private:
  std::string origin_;
};

absl::Status ParseNormalizer(const Parser& ps, const json& node, const std::string& path, Model* m,
                             int depth = 0) {
  if (depth > kMaxNesting) return ps.Bad(path, "nested too deeply");
  UNL_ASSIGN_OR_RETURN(std::string type, ps.Type(node, path));
  if (type == "Sequence") {
    const json* list = Parser::Find(node, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return ps.Bad(absl::StrCat(path, ".normalizers"), "missing or not an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      UNL_RETURN_IF_ERROR(ParseNormalizer(
          ps, (*list)[i], absl::StrCat(path, ".normalizers[", i, "]"), m, depth + 1));
    }
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    UNL_ASSIGN_OR_RETURN(std::string prepend, ps.String(node, "prepend", path));
    m->normalizers.push_back({NormStep::kPrepend, "", prepend});
    return absl::OkStatus();
  }
  if (type == "Replace") {
    UNL_ASSIGN_OR_RETURN(std::string from, ps.StringPattern(node, path));
    UNL_ASSIGN_OR_RETURN(std::string to, ps.String(node, "content", path));
    m->normalizers.push_back({NormStep::kReplace, from, to});
    return absl::OkStatus();
  }
  if (type == "NFC") {
    m->normalizers.push_back({NormStep::kNfc, "", ""});
    return absl::OkStatus();
  }
  return ps.Bad(absl::StrCat(path, ".type"),
                absl::StrCat("normalizer \"", type,
                             "\" is not supported (supported: Sequence, Prepend, Replace, NFC)"));
}

absl::Status ParsePreTokenizer(const Parser& ps, const json& node, const std::string& path,
                               Model* m, int depth = 0) {
  if (depth > kMaxNesting) return ps.Bad(path, "nested too deeply");
  UNL_ASSIGN_OR_RETURN(std::string type, ps.Type(node, path));
  if (type == "Sequence") {
    const json* list = Parser::Find(node, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return ps.Bad(absl::StrCat(path, ".pretokenizers"), "missing or not an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      UNL_RETURN_IF_ERROR(ParsePreTokenizer(
          ps, (*list)[i], absl::StrCat(path, ".pretokenizers[", i, "]"), m, depth + 1));
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    const json* pattern = Parser::Find(node, "pattern");
    const std::string p = absl::StrCat(path, ".pattern");
    if (pattern == nullptr || !pattern->is_object()) return ps.Bad(p, "missing or not an object");
    UNL_ASSIGN_OR_RETURN(std::string regex, ps.String(*pattern, "Regex", p));
    std::optional<hf::SplitPattern> known = hf::RecognizeSplitPattern(regex);
    if (!known) {
      return ps.Bad(absl::StrCat(p, ".Regex"),
                    absl::StrCat("regex ", json(regex).dump(),
                                 " is not supported (supported: the GPT-2, Llama 3 and Qwen2 "
                                 "pre-tokenizer regexes)"));
    }
    UNL_ASSIGN_OR_RETURN(std::string behavior, ps.String(node, "behavior", path));
    if (behavior != "Isolated") {
      return ps.Bad(absl::StrCat(path, ".behavior"),
                    absl::StrCat("\"", behavior, "\" is not supported (only Isolated)"));
    }
    UNL_ASSIGN_OR_RETURN(bool invert, ps.Bool(node, "invert", false, path));
    if (invert) return ps.Bad(absl::StrCat(path, ".invert"), "true is not supported");
    PreStep step{PreStep::kSplit};
    step.pattern = *known;
    m->pre_tokenizers.push_back(step);
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    PreStep step{PreStep::kByteLevel};
    UNL_ASSIGN_OR_RETURN(step.add_prefix_space, ps.Bool(node, "add_prefix_space", false, path));
    UNL_ASSIGN_OR_RETURN(step.use_regex, ps.Bool(node, "use_regex", true, path));
    m->pre_tokenizers.push_back(step);
    m->byte_level = true;
    return absl::OkStatus();
  }
  return ps.Bad(absl::StrCat(path, ".type"),
                absl::StrCat("pre-tokenizer \"", type,
                             "\" is not supported (supported: Sequence, Split, ByteLevel)"));
}

absl::Status ParseDecoder(const Parser& ps, const json& node, const std::string& path, Model* m,
                          int depth = 0) {
  if (depth > kMaxNesting) return ps.Bad(path, "nested too deeply");
  UNL_ASSIGN_OR_RETURN(std::string type, ps.Type(node, path));
  if (type == "Sequence") {
    const json* list = Parser::Find(node, "decoders");
    if (list == nullptr || !list->is_array()) {
      return ps.Bad(absl::StrCat(path, ".decoders"), "missing or not an array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      UNL_RETURN_IF_ERROR(
          ParseDecoder(ps, (*list)[i], absl::StrCat(path, ".decoders[", i, "]"), m, depth + 1));
    }
    return absl::OkStatus();
  }
  DecStep step{DecStep::kFuse};
  if (type == "ByteLevel") {
    step.kind = DecStep::kByteLevel;
  } else if (type == "Replace") {
    step.kind = DecStep::kReplace;
    UNL_ASSIGN_OR_RETURN(step.from, ps.StringPattern(node, path));
    UNL_ASSIGN_OR_RETURN(step.to, ps.String(node, "content", path));
  } else if (type == "ByteFallback") {
    step.kind = DecStep::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecStep::kFuse;
  } else if (type == "Strip") {
    step.kind = DecStep::kStrip;
    UNL_ASSIGN_OR_RETURN(step.from, ps.String(node, "content", path));
    UNL_ASSIGN_OR_RETURN(step.start, ps.Int(node, "start", path));
    UNL_ASSIGN_OR_RETURN(step.stop, ps.Int(node, "stop", path));
    if (step.from.empty() || step.start < 0 || step.stop < 0) {
      return ps.Bad(path, "Strip needs a non-empty content and non-negative start/stop");
    }
  } else {
    return ps.Bad(absl::StrCat(path, ".type"),
                  absl::StrCat("decoder \"", type,
                               "\" is not supported (supported: Sequence, ByteLevel, Replace, "
                               "ByteFallback, Fuse, Strip)"));
  }
  m->decoders.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status ParseBpe(const Parser& ps, const json& model, Model* m) {
  UNL_ASSIGN_OR_RETURN(std::string type, ps.Type(model, "model"));
  if (type != "BPE") {
    return ps.Bad("model.type", absl::StrCat("model \"", type,
                                             "\" is not supported (only BPE; WordPiece, "
                                             "Unigram and WordLevel are not)"));
  }
  if (const json* dropout = Parser::Find(model, "dropout");
      dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return ps.Bad("model.dropout", "BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* v = Parser::Find(model, key);
    if (v != nullptr && !(v->is_string() && v->get<std::string>().empty())) {
      return ps.Bad(absl::StrCat("model.", key), "is not supported (must be null or empty)");
    }
  }
  UNL_ASSIGN_OR_RETURN(m->byte_fallback, ps.Bool(model, "byte_fallback", false, "model"));
  UNL_ASSIGN_OR_RETURN(m->ignore_merges, ps.Bool(model, "ignore_merges", false, "model"));
  UNL_ASSIGN_OR_RETURN(m->fuse_unk, ps.Bool(model, "fuse_unk", false, "model"));

  const json* vocab = Parser::Find(model, "vocab");
  if (vocab == nullptr || !vocab->is_object() || vocab->empty()) {
    return ps.Bad("model.vocab", "missing, empty or not an object");
  }
  constexpr int64_t kMaxId = int64_t{1} << 24;
  m->vocab.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() >= kMaxId) {
      return ps.Bad(absl::StrCat("model.vocab[", json(it.key()).dump(), "]"),
                    "not an id in [0, 2^24)");
    }
    const auto id = static_cast<int32_t>(it->get<int64_t>());
    m->vocab.emplace(it.key(), id);
    m->vocab_size = std::max<int64_t>(m->vocab_size, id + 1);
  }

  const json* merges = Parser::Find(model, "merges");
  if (merges == nullptr || !merges->is_array())
    return ps.Bad("model.merges", "missing or not an array");
  m->merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const json& merge = (*merges)[i];
    const std::string path = absl::StrCat("model.merges[", i, "]");
    std::string a, b;
    if (merge.is_string()) {
      const std::string& s = merge.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 >= s.size() ||
          s.find(' ', space + 1) != std::string::npos) {
        return ps.Bad(path, absl::StrCat(merge.dump(), " is not two tokens separated by a space"));
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      a = merge[0].get<std::string>();
      b = merge[1].get<std::string>();
    } else {
      return ps.Bad(path, "not a string \"a b\" or a pair of strings");
    }
    auto ia = m->vocab.find(a);
    auto ib = m->vocab.find(b);
    auto iab = m->vocab.find(a + b);
    if (ia == m->vocab.end() || ib == m->vocab.end() || iab == m->vocab.end()) {
      return ps.Bad(path,
                    absl::StrCat(merge.dump(), ": a token or the merge is not in the vocabulary"));
    }
    m->merges.emplace(PairKey(ia->second, ib->second),
                      MergeValue{static_cast<int32_t>(i), iab->second});
  }

  if (const json* unk = Parser::Find(model, "unk_token"); unk != nullptr) {
    if (!unk->is_string()) return ps.Bad("model.unk_token", "not a string");
    auto it = m->vocab.find(unk->get<std::string>());
    if (it == m->vocab.end()) return ps.Bad("model.unk_token", "not in the vocabulary");
    m->unk_id = it->second;
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const Parser& ps, const json& root, Model* m) {
  const json* list = Parser::Find(root, "added_tokens");
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) return ps.Bad("added_tokens", "not an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& node = (*list)[i];
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    if (!node.is_object()) return ps.Bad(path, "not an object");
    AddedToken token;
    UNL_ASSIGN_OR_RETURN(int64_t id, ps.Int(node, "id", path));
    if (id < 0 || id >= (int64_t{1} << 24))
      return ps.Bad(absl::StrCat(path, ".id"), "out of range");
    token.id = static_cast<int32_t>(id);
    UNL_ASSIGN_OR_RETURN(token.content, ps.String(node, "content", path));
    if (token.content.empty()) return ps.Bad(absl::StrCat(path, ".content"), "empty");
    UNL_ASSIGN_OR_RETURN(token.special, ps.Bool(node, "special", false, path));
    UNL_ASSIGN_OR_RETURN(token.lstrip, ps.Bool(node, "lstrip", false, path));
    UNL_ASSIGN_OR_RETURN(token.rstrip, ps.Bool(node, "rstrip", false, path));
    UNL_ASSIGN_OR_RETURN(bool single_word, ps.Bool(node, "single_word", false, path));
    if (single_word) return ps.Bad(absl::StrCat(path, ".single_word"), "true is not supported");
    m->vocab_size = std::max<int64_t>(m->vocab_size, token.id + 1);
    m->added_ids[token.content] = token.id;
    m->added.push_back(std::move(token));
  }
  for (size_t i = 0; i < m->added.size(); ++i) {
    m->added_by_first_byte[static_cast<unsigned char>(m->added[i].content[0])].push_back(
        static_cast<int32_t>(i));
  }
  for (auto& bucket : m->added_by_first_byte) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](int32_t x, int32_t y) {
      return m->added[x].content.size() > m->added[y].content.size();
    });
  }
  return absl::OkStatus();
}

// bos_token / eos_token / pad_token: a string, {"content": ...}, null or absent.
absl::StatusOr<std::optional<int64_t>> ConfigToken(const Parser& ps, const json& config,
                                                   const char* key, const Model& m) {
  const json* v = Parser::Find(config, key);
  if (v == nullptr) return std::optional<int64_t>();
  std::string content;
  if (v->is_string()) {
    content = v->get<std::string>();
  } else if (v->is_object()) {
    UNL_ASSIGN_OR_RETURN(content, ps.String(*v, "content", key));
  } else {
    return ps.Bad(key, "not a string or an object with a content");
  }
  if (auto it = m.added_ids.find(content); it != m.added_ids.end()) {
    return std::optional<int64_t>(it->second);
  }
  if (auto it = m.vocab.find(content); it != m.vocab.end()) {
    return std::optional<int64_t>(it->second);
  }
  return ps.Bad(key, absl::StrCat(json(content).dump(), " is not in the vocabulary"));
}

absl::Status ParseConfig(const Parser& ps, const json& config, Model* m) {
  if (!config.is_object()) return ps.Bad("(root)", "not a JSON object");
  UNL_ASSIGN_OR_RETURN(std::optional<int64_t> bos, ConfigToken(ps, config, "bos_token", *m));
  UNL_ASSIGN_OR_RETURN(std::optional<int64_t> eos, ConfigToken(ps, config, "eos_token", *m));
  UNL_ASSIGN_OR_RETURN(std::optional<int64_t> pad, ConfigToken(ps, config, "pad_token", *m));
  if (!eos) return ps.Bad("eos_token", "missing");
  m->eos = *eos;
  m->pad = pad ? *pad : *eos;
  m->bos = bos ? *bos : m->pad;
  UNL_ASSIGN_OR_RETURN(m->add_bos, ps.Bool(config, "add_bos_token", bos.has_value(), "(root)"));
  if (const json* extra = Parser::Find(config, "additional_special_tokens"); extra != nullptr) {
    if (!extra->is_array()) return ps.Bad("additional_special_tokens", "not an array");
    for (size_t i = 0; i < extra->size(); ++i) {
      const json& t = (*extra)[i];
      const json* content = t.is_object() ? Parser::Find(t, "content") : &t;
      if (content == nullptr || !content->is_string()) {
        return ps.Bad(absl::StrCat("additional_special_tokens[", i, "]"), "not a token");
      }
      if (auto it = m->added_ids.find(content->get<std::string>()); it != m->added_ids.end()) {
        m->is_special[it->second] = 1;
      }
    }
  }
  if (const json* t = Parser::Find(config, "chat_template"); t != nullptr) {
    if (t->is_string()) {
      m->chat_template = t->get<std::string>();
    } else if (t->is_array()) {
      for (const json& named : *t) {
        const json* name = Parser::Find(named, "name");
        const json* text = Parser::Find(named, "template");
        if (name == nullptr || text == nullptr || !name->is_string() || !text->is_string()) {
          return ps.Bad("chat_template", "not a list of {name, template}");
        }
        if (m->chat_template.empty() || name->get<std::string>() == "default") {
          m->chat_template = text->get<std::string>();
        }
      }
    } else {
      return ps.Bad("chat_template", "not a string or a list");
    }
  }
  // QA prompts (training, verification, qa_format queries) use the chat format; a template we
  // cannot render exactly is refused here rather than replaced by another layout silently.
  if (!m->chat_template.empty()) {
    absl::StatusOr<ChatTemplate> chat = ChatTemplate::Recognize(m->chat_template);
    if (!chat.ok()) {
      return ps.Bad("chat_template",
                    absl::StrCat(absl::StripPrefix(chat.status().message(), "chat_template: "),
                                 "; QA prompts must be laid out as the model was trained, so "
                                 "this tokenizer is refused: remove chat_template (the plain "
                                 "\"Question: ...\\nAnswer: \" layout is then used) or replace "
                                 "it with one of the recognised templates"));
    }
    m->chat = *std::move(chat);
  }
  return absl::OkStatus();
}

absl::Status Finish(const Parser& ps, Model* m) {
  // Ids are dense in real files; a stray huge id would make the id tables huge.
  constexpr int64_t kMaxHoles = 1 << 16;
  const auto tokens = static_cast<int64_t>(m->vocab.size() + m->added.size());
  if (m->vocab_size > tokens + kMaxHoles) {
    return ps.Bad("model.vocab", absl::StrCat("ids are not dense: the largest is ",
                                              m->vocab_size - 1, " for ", tokens, " tokens"));
  }
  m->id_to_token.assign(m->vocab_size, std::string());
  m->is_added.assign(m->vocab_size, 0);
  m->is_special.assign(m->vocab_size, 0);
  for (const auto& [token, id] : m->vocab) m->id_to_token[id] = token;
  for (const AddedToken& t : m->added) {
    m->id_to_token[t.id] = t.content;
    m->is_added[t.id] = 1;
    m->is_special[t.id] = t.special ? 1 : 0;
  }
  if (m->byte_level) {
    for (int b = 0; b < 256; ++b) {
      auto it = m->vocab.find(hf::ByteToUnicode()[b]);
      if (it == m->vocab.end()) {
        return ps.Bad("model.vocab",
                      absl::StrCat("ByteLevel vocabulary lacks the symbol of byte ", b));
      }
      m->byte_ids[b] = it->second;
    }
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = m->vocab.find(name);
    m->fallback_ids[b] = it == m->vocab.end() ? -1 : it->second;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseModel(const std::string& tokenizer_json, const std::string& config_json,
                        const std::string& origin, Model* m) {
  const Parser ps(absl::StrCat(origin, "/", HfTokenizer::kTokenizerFile));
  const Parser pc(absl::StrCat(origin, "/", HfTokenizer::kConfigFile));
  const json root = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return ps.Bad("(root)", "not valid JSON or not an object");
  }
  const json* model = Parser::Find(root, "model");
  if (model == nullptr) return ps.Bad("model", "missing");
  UNL_RETURN_IF_ERROR(ParseBpe(ps, *model, m));
  UNL_RETURN_IF_ERROR(ParseAddedTokens(ps, root, m));
  if (const json* n = Parser::Find(root, "normalizer"); n != nullptr) {
    UNL_RETURN_IF_ERROR(ParseNormalizer(ps, *n, "normalizer", m));
  }
  if (const json* p = Parser::Find(root, "pre_tokenizer"); p != nullptr) {
    UNL_RETURN_IF_ERROR(ParsePreTokenizer(ps, *p, "pre_tokenizer", m));
  }
  const json* d = Parser::Find(root, "decoder");
  if (d == nullptr) return ps.Bad("decoder", "missing (a tokenizer without one is not supported)");
  UNL_RETURN_IF_ERROR(ParseDecoder(ps, *d, "decoder", m));
  UNL_RETURN_IF_ERROR(Finish(ps, m));
  const json config = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return pc.Bad("(root)", "not valid JSON");
  return ParseConfig(pc, config, m);
}

}  // namespace unlearning::core::hf_internal
