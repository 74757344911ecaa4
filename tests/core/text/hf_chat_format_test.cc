#include "core/text/hf_chat_format.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// Shortened templates: recognition looks at signatures only.
constexpr char kLlama2[] =
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' %}";
constexpr char kLlama3[] =
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
    "message['content'] | trim + '<|eot_id|>' %}";
constexpr char kQwen2[] =
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}";
constexpr char kQwen3[] =
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}";

TEST(ChatTemplateTest, RecognisesTheFourFormats) {
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate llama2, ChatTemplate::Recognize(kLlama2));
  EXPECT_EQ(llama2.name(), "llama2");
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate llama3, ChatTemplate::Recognize(kLlama3));
  EXPECT_EQ(llama3.name(), "llama3");
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate qwen2, ChatTemplate::Recognize(kQwen2));
  EXPECT_EQ(qwen2.name(), "qwen2");
  EXPECT_EQ(qwen2.default_system(), "You are a helpful assistant.");
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate qwen3, ChatTemplate::Recognize(kQwen3));
  EXPECT_EQ(qwen3.name(), "qwen3");
  EXPECT_EQ(qwen3.default_system(), "");  // the system text there is not a literal
}

TEST(ChatTemplateTest, RendersPromptAndAnswer) {
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate llama2, ChatTemplate::Recognize(kLlama2));
  EXPECT_EQ(llama2.Prompt(" Who? ", "Be brief."),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Who? [/INST]");
  EXPECT_EQ(llama2.Prompt(" Who? "), "[INST] Who? [/INST]");
  EXPECT_EQ(llama2.Answer(" Ann. "), " Ann. </s>");
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate llama3, ChatTemplate::Recognize(kLlama3));
  EXPECT_EQ(llama3.Prompt("Who?"),
            "<|start_header_id|>user<|end_header_id|>\n\nWho?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(llama3.Answer("Ann.\n"), "Ann.<|eot_id|>");
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate qwen2, ChatTemplate::Recognize(kQwen2));
  EXPECT_EQ(qwen2.Prompt("Who?"),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nWho?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(qwen2.Answer("Ann."), "Ann.<|im_end|>\n");
  UNL_ASSERT_OK_AND_ASSIGN(ChatTemplate qwen3, ChatTemplate::Recognize(kQwen3));
  EXPECT_EQ(qwen3.Prompt("Who?", "S"),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nWho?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(qwen3.Answer("\n\nAnn."), "Ann.<|im_end|>\n");
}

TEST(ChatTemplateTest, OtherTemplatesAreRefusedClearly) {
  // Mistral's [INST] template has no <<SYS>> block.
  EXPECT_THAT(ChatTemplate::Recognize("{{ bos_token }}{{ '[INST] ' + m + ' [/INST]' }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a recognised")));
  EXPECT_THAT(ChatTemplate::Recognize(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ChatTemplate::Recognize("<|start_header_id|><|end_header_id|><|eot_id|>"
                                      "Cutting Knowledge Date: December 2023"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Llama 3.1")));
  EXPECT_THAT(ChatTemplate::Recognize("{% for m in messages %}<|user|>{{ m }}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("<|user|>")));
}

}  // namespace
}  // namespace unlearning::core
