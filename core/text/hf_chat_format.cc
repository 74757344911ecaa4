#include "core/text/hf_chat_format.h"

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "core/text/hf_pretokenizer.h"

namespace unlearning::core {
namespace {

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Python's str.isspace for one code point (Jinja's trim and str.strip use it).
bool IsPythonSpace(char32_t cp) { return hf::IsWhiteSpace(cp) || (cp >= 0x1C && cp <= 0x1F); }

// str.strip(): both ends, Unicode whitespace.
std::string_view Strip(std::string_view s) {
  while (!s.empty()) {
    auto [cp, len] = hf::DecodeUtf8At(s, 0);
    if (!IsPythonSpace(cp)) break;
    s.remove_prefix(len);
  }
  while (!s.empty()) {
    size_t start = s.size() - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (!IsPythonSpace(hf::DecodeUtf8At(s, start).first)) break;
    s.remove_suffix(s.size() - start);
  }
  return s;
}

// A ChatML template's built-in system message: the first literal
// '<|im_start|>system\n...<|im_end|>' in it (Jinja source, so "\n" is a backslash and an n).
std::string DefaultSystem(std::string_view tmpl) {
  constexpr std::string_view kOpen = "<|im_start|>system\\n";
  constexpr std::string_view kClose = "<|im_end|>";
  for (size_t at = tmpl.find(kOpen); at != std::string_view::npos; at = tmpl.find(kOpen, at + 1)) {
    const size_t begin = at + kOpen.size();
    const size_t end = tmpl.find(kClose, begin);
    if (end == std::string_view::npos) break;
    const std::string_view text = tmpl.substr(begin, end - begin);
    if (!text.empty() && text.find_first_of("'\"{}+\\") == std::string_view::npos) {
      return std::string(text);
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Recognize(std::string_view t) {
  if (Contains(t, "<|start_header_id|>") && Contains(t, "<|end_header_id|>") &&
      Contains(t, "<|eot_id|>")) {
    if (Contains(t, "Cutting Knowledge Date")) {
      return absl::InvalidArgumentError(
          "chat_template: a Llama 3.1+ template (dated system header) is not supported; "
          "recognised: Llama 2, Llama 3, Qwen2/2.5, Qwen3");
    }
    return ChatTemplate(ChatFormat::kLlama3, "");
  }
  if (Contains(t, "<|im_start|>") && Contains(t, "<|im_end|>")) {
    if (Contains(t, "<think>")) return ChatTemplate(ChatFormat::kQwen3, DefaultSystem(t));
    return ChatTemplate(ChatFormat::kQwen2, DefaultSystem(t));
  }
  if (Contains(t, "[INST]") && Contains(t, "[/INST]") && Contains(t, "<<SYS>>")) {
    return ChatTemplate(ChatFormat::kLlama2, "");
  }
  std::string start(t.substr(0, 60));
  return absl::InvalidArgumentError(
      std::string("chat_template: not a recognised chat format (recognised: Llama 2, Llama 3, "
                  "Qwen2/2.5, Qwen3 ChatML); template starts ") +
      (t.empty() ? std::string("empty") : "\"" + start + "\""));
}

std::string_view ChatTemplate::name() const {
  switch (format_) {
    case ChatFormat::kLlama2:
      return "llama2";
    case ChatFormat::kLlama3:
      return "llama3";
    case ChatFormat::kQwen2:
      return "qwen2";
    case ChatFormat::kQwen3:
      return "qwen3";
  }
  return "";
}

std::string ChatTemplate::Prompt(std::string_view question, std::string_view system) const {
  std::string out;
  switch (format_) {
    case ChatFormat::kLlama2: {
      std::string content;
      if (!system.empty()) {
        content = "<<SYS>>\n" + std::string(system) + "\n<</SYS>>\n\n";
      }
      content += question;
      out = "[INST] " + std::string(Strip(content)) + " [/INST]";
      break;
    }
    case ChatFormat::kLlama3:
      if (!system.empty()) {
        out = "<|start_header_id|>system<|end_header_id|>\n\n" + std::string(Strip(system)) +
              "<|eot_id|>";
      }
      out += "<|start_header_id|>user<|end_header_id|>\n\n" + std::string(Strip(question)) +
             "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFormat::kQwen2:
    case ChatFormat::kQwen3: {
      const std::string_view sys = system.empty() ? std::string_view(default_system_) : system;
      if (!sys.empty()) out = "<|im_start|>system\n" + std::string(sys) + "<|im_end|>\n";
      out += "<|im_start|>user\n" + std::string(question) + "<|im_end|>\n<|im_start|>assistant\n";
      if (format_ == ChatFormat::kQwen3) out += "<think>\n\n</think>\n\n";
      break;
    }
  }
  return out;
}

std::string ChatTemplate::Answer(std::string_view answer) const {
  return AnswerText(answer) + AnswerEnd();
}

std::string ChatTemplate::AnswerText(std::string_view answer) const {
  switch (format_) {
    case ChatFormat::kLlama2:
      return " " + std::string(Strip(answer));
    case ChatFormat::kLlama3:
      return std::string(Strip(answer));
    case ChatFormat::kQwen2:
      return std::string(answer);
    case ChatFormat::kQwen3: {
      const size_t first = answer.find_first_not_of('\n');
      answer.remove_prefix(first == std::string_view::npos ? answer.size() : first);
      return std::string(answer);
    }
  }
  return "";
}

std::string_view ChatTemplate::EndOfTurnToken() const {
  switch (format_) {
    case ChatFormat::kLlama2:
      return "</s>";
    case ChatFormat::kLlama3:
      return "<|eot_id|>";
    case ChatFormat::kQwen2:
    case ChatFormat::kQwen3:
      return "<|im_end|>";
  }
  return "";
}

std::string ChatTemplate::AnswerEnd() const {
  switch (format_) {
    case ChatFormat::kLlama2:
      return " </s>";
    case ChatFormat::kLlama3:
      return "<|eot_id|>";
    case ChatFormat::kQwen2:
    case ChatFormat::kQwen3:
      return "<|im_end|>\n";
  }
  return "";
}

}  // namespace unlearning::core
