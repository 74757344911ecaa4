// The chat formats against Python's jinja2 rendering of the real templates (Llama 3 and Qwen3
// from the fetched tokenizer_config.json files, Llama 2 chat and Qwen2 instruct as published):
// tests/golden/chat_golden.py, run by the ctest fixture hf_tokenizers.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/text/hf_chat_format.h"
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

}  // namespace
}  // namespace unlearning::core
