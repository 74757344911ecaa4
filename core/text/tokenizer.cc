#include "core/text/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <nlohmann/json.hpp>

#include "core/text/hf_tokenizer.h"

namespace unlearning::core {
namespace {

constexpr char kConfigFile[] = "tokenizer_config.json";
constexpr char kByteTokenizerClass[] = "UnlearningByteTokenizer";
constexpr char kByteTokenizerKind[] = "byte";

}  // namespace

std::vector<int64_t> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (char c : text)
    ids.push_back(static_cast<int64_t>(static_cast<unsigned char>(c)) + kByteOffset);
  return ids;
}

std::string ByteTokenizer::Decode(const std::vector<int64_t>& ids) const {
  std::string text;
  text.reserve(ids.size());
  for (int64_t id : ids) {
    // Special tokens (and ids outside the vocabulary) carry no bytes.
    if (id < kByteOffset || id >= kVocabSize) continue;
    text.push_back(static_cast<char>(static_cast<unsigned char>(id - kByteOffset)));
  }
  return text;
}

absl::Status ByteTokenizer::Save(const std::string& dir) const {
  const nlohmann::json config = {
      {"tokenizer_class", kByteTokenizerClass},
      {"unlearning_tokenizer", kByteTokenizerKind},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"},
      {"pad_token", "<pad>"},
      {"vocab_size", kVocabSize},
  };
  const std::string path = absl::StrCat(dir, "/", kConfigFile);
  std::ofstream out(path, std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("tokenizer: cannot write ", path));
  out << config.dump(2) << "\n";
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("tokenizer: write failed: ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kConfigFile);
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("tokenizer: no ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const nlohmann::json config =
      nlohmann::json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", path, " is not a JSON object"));
  }
  auto kind = config.find("unlearning_tokenizer");
  auto cls = config.find("tokenizer_class");
  const bool byte_kind =
      kind != config.end() && kind->is_string() && kind->get<std::string>() == kByteTokenizerKind;
  const bool byte_class =
      cls != config.end() && cls->is_string() && cls->get<std::string>() == kByteTokenizerClass;
  if (byte_kind || (kind == config.end() && byte_class)) {
    return std::unique_ptr<Tokenizer>(std::make_unique<ByteTokenizer>());
  }
  // A Hugging Face model directory: tokenizer.json beside tokenizer_config.json.
  std::error_code error;
  if (kind == config.end() && std::filesystem::is_regular_file(
                                  absl::StrCat(dir, "/", HfTokenizer::kTokenizerFile), error)) {
    absl::StatusOr<std::unique_ptr<HfTokenizer>> hf = HfTokenizer::Load(dir);
    if (!hf.ok()) return hf.status();
    return std::unique_ptr<Tokenizer>(std::move(*hf));
  }
  std::string name = "(unnamed)";
  if (kind != config.end()) {
    name = absl::StrCat("unlearning_tokenizer=", kind->dump());
  } else if (cls != config.end()) {
    name = absl::StrCat("tokenizer_class=", cls->dump());
  }
  return absl::InvalidArgumentError(absl::StrCat("tokenizer: unsupported tokenizer ", name, " in ",
                                                 path, " (and no ", HfTokenizer::kTokenizerFile,
                                                 ")"));
}

}  // namespace unlearning::core
