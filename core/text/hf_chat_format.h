// Chat formats for question-answer prompts of Hugging Face chat models, recognised from the
// chat_template of tokenizer_config.json by signature (there is no Jinja engine):
//   kLlama2  "[INST]", "[/INST]" and "<<SYS>>"                        Llama 2 chat
//   kLlama3  "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"  Llama 3 instruct (not 3.1+,
//            whose template always writes a dated system header: refused)
//   kQwen2   "<|im_start|>" and "<|im_end|>" (ChatML)                  Qwen2, Qwen2.5
//   kQwen3   ChatML with "<think>"                                     Qwen3 (non-thinking prompts)
// Every other template is refused with kInvalidArgument. The rendered text equals what the
// template renders for one system (optional) + user turn and one assistant turn; tested against
// Python's jinja2 on the real templates (tests/golden/chat_golden.py). Answers that contain
// "</think>" are not supported for Qwen3.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace unlearning::core {

enum class ChatFormat { kLlama2, kLlama3, kQwen2, kQwen3 };

class ChatTemplate {
 public:
  // The format of `chat_template`; kInvalidArgument naming the supported formats otherwise.
  static absl::StatusOr<ChatTemplate> Recognize(std::string_view chat_template);

  ChatFormat format() const { return format_; }
  // "llama2", "llama3", "qwen2" or "qwen3".
  std::string_view name() const;
  // The system message a template inserts when the conversation has none (Qwen2: "You are a
  // helpful assistant."), else "".
  const std::string& default_system() const { return default_system_; }

  // The conversation up to where the assistant's answer starts (the template's generation prompt;
  // for Qwen3 with thinking off), without the bos token: callers prepend bos_id() when the
  // tokenizer's add_bos_token() says so, as the templates do. An empty `system` means none (then
  // default_system() if the template has one).
  std::string Prompt(std::string_view question, std::string_view system = {}) const;
  // The assistant's turn as the template renders it right after Prompt(): the answer and the text
  // that closes it (Llama 2: " " + answer + " </s>"; Llama 3: answer + "<|eot_id|>"; Qwen:
  // answer + "<|im_end|>\n").
  std::string Answer(std::string_view answer) const;
  // Answer() in two parts: the answer as the template writes it (Llama 2: " " + stripped answer;
  // Llama 3: stripped; Qwen3: without leading newlines) and the text that closes the turn.
  // Answer(a) == AnswerText(a) + AnswerEnd().
  std::string AnswerText(std::string_view answer) const;
  std::string AnswerEnd() const;
  // The special token that ends the assistant's turn: "</s>", "<|eot_id|>" or "<|im_end|>";
  // generation in this format stops at it.
  std::string_view EndOfTurnToken() const;

 private:
  ChatTemplate(ChatFormat format, std::string default_system)
      : format_(format), default_system_(std::move(default_system)) {}

  ChatFormat format_;
  std::string default_system_;
};

}  // namespace unlearning::core
