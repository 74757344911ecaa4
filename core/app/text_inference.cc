#include "core/app/text_inference.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/data/text_example.h"
#include "core/text/stream_decoder.h"
#include "core/text/utf8.h"

namespace unlearning::core {
namespace {

// Continuations scored in one forward pass.
constexpr size_t kScoreBatchSize = 16;

// [bos_id() if the tokenizer adds one] + the prompt's tokens.
std::vector<int64_t> EncodePrompt(const LanguageModel& lm, const TextPrompt& prompt) {
  std::vector<int64_t> ids;
  if (lm.tokenizer().add_bos()) ids.push_back(lm.bos_id());
  const std::string text =
      prompt.qa_format ? lm.tokenizer().QaPromptText(prompt.text) : prompt.text;
  for (int64_t id : lm.tokenizer().Encode(text)) ids.push_back(id);
  return ids;
}

}  // namespace

absl::StatusOr<TextGeneration> Generate(const LanguageModel& lm, const TextPrompt& prompt,
                                        const GenerateOptions& options,
                                        const std::function<bool(const TextChunk&)>& on_chunk,
                                        const CancellationToken* cancel) {
  if (prompt.text.empty()) return absl::InvalidArgumentError("prompt is empty");
  if (!IsValidUtf8(prompt.text)) return absl::InvalidArgumentError("prompt is not valid UTF-8");
  if (options.max_new_tokens < 1 || options.max_new_tokens > kMaxGenerateTokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be in [1, ", kMaxGenerateTokens,
                                                   "], got ", options.max_new_tokens));
  }
  if (!(options.temperature >= 0.0 && options.temperature <= kMaxTemperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be in [0, ", kMaxTemperature,
                                                   "], got ", options.temperature));
  }
  const std::vector<int64_t> ids = EncodePrompt(lm, prompt);
  const int64_t context = lm.max_context();
  if (static_cast<int64_t>(ids.size()) + options.max_new_tokens > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", ids.size(), " tokens) + max_tokens (", options.max_new_tokens,
                     ") exceeds the model's context of ", context, " tokens"));
  }
  StreamDecoder decoder(lm.tokenizer());
  TextChunk pending;     // ids whose text has not been sent yet
  std::string streamed;  // the text of every chunk so far
  auto on_token = [&](int64_t id) {
    pending.token_ids.push_back(id);
    pending.text = decoder.Push(id);
    if (pending.text.empty()) return true;
    streamed += pending.text;
    TextChunk chunk = std::move(pending);
    pending = TextChunk();
    return on_chunk ? on_chunk(chunk) : true;
  };
  UNL_ASSIGN_OR_RETURN(GeneratedTokens generated,
                       GenerateTokens(lm, ids, options, on_token, cancel));
  TextGeneration out;
  out.token_ids = std::move(generated.ids);
  out.finish_reason = generated.finish_reason;
  out.tail = std::move(pending);
  out.tail.text = decoder.Finish();
  out.text = streamed + out.tail.text;
  return out;
}

absl::StatusOr<std::vector<ContinuationScore>> Score(const LanguageModel& lm,
                                                     const TextPrompt& prompt,
                                                     const std::vector<std::string>& continuations,
                                                     const CancellationToken* cancel) {
  if (continuations.empty()) {
    return absl::InvalidArgumentError("no continuation: send at least one to score");
  }
  auto name = [&](size_t i) {
    return continuations.size() == 1 ? std::string("continuation")
                                     : absl::StrCat("continuations[", i, "]");
  };
  for (size_t i = 0; i < continuations.size(); ++i) {
    if (continuations[i].empty()) return absl::InvalidArgumentError(name(i) + " is empty");
  }
  bool valid = IsValidUtf8(prompt.text);
  for (const std::string& c : continuations) valid = valid && IsValidUtf8(c);
  if (!valid) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt and ", continuations.size() == 1 ? "continuation" : "continuations",
                     " must be valid UTF-8"));
  }
  const std::vector<int64_t> prompt_ids = EncodePrompt(lm, prompt);
  if (prompt_ids.empty()) {
    return absl::InvalidArgumentError(
        "prompt is empty and this model's tokenizer adds no bos token (add_bos_token false), so "
        "the first continuation token has nothing to be scored after: send a prompt");
  }
  const int64_t prompt_len = static_cast<int64_t>(prompt_ids.size());
  std::vector<std::vector<int64_t>> sequences;
  for (size_t i = 0; i < continuations.size(); ++i) {
    std::vector<int64_t> ids = prompt_ids;
    const std::string& c = continuations[i];
    for (int64_t id :
         lm.tokenizer().Encode(prompt.qa_format ? lm.tokenizer().QaAnswerText(c) : c)) {
      ids.push_back(id);
    }
    const int64_t total = static_cast<int64_t>(ids.size());
    if (total == prompt_len) {
      return absl::InvalidArgumentError(name(i) + " has no token");
    }
    if (total > lm.max_context()) {
      return absl::InvalidArgumentError(absl::StrCat("prompt + ", name(i), " is ", total,
                                                     " tokens; the model's context is ",
                                                     lm.max_context()));
    }
    sequences.push_back(std::move(ids));
  }

  std::vector<ContinuationScore> scores;
  for (size_t begin = 0; begin < sequences.size(); begin += kScoreBatchSize) {
    if (cancel != nullptr && cancel->cancelled()) return absl::CancelledError("scoring cancelled");
    const size_t end = std::min(sequences.size(), begin + kScoreBatchSize);
    size_t longest = 0;
    for (size_t i = begin; i < end; ++i) longest = std::max(longest, sequences[i].size());
    UNL_RETURN_IF_ERROR(TorchCall("scoring", [&]() -> absl::Status {
      c10::InferenceMode guard;
      const int64_t b = static_cast<int64_t>(end - begin);
      const int64_t t = static_cast<int64_t>(longest);
      at::Tensor input = at::full({b, t}, lm.pad_id(), at::kLong);  // [B, T], right-padded
      for (size_t i = begin; i < end; ++i) {
        const auto& ids = sequences[i];
        input[static_cast<int64_t>(i - begin)]
            .narrow(0, 0, static_cast<int64_t>(ids.size()))
            .copy_(at::tensor(ids, at::kLong));
      }
      at::Tensor logp = at::log_softmax(lm.Logits(input), -1);  // [B, T, V]
      // log p(ids[t] | ids[:t]) for t = 1..T-1.
      at::Tensor token_lp =
          logp.narrow(1, 0, t - 1)
              .gather(-1, input.narrow(1, 1, t - 1).to(logp.device()).unsqueeze(-1))
              .squeeze(-1)
              .to(at::kCPU, at::kDouble)
              .contiguous();  // [B, T - 1]
      auto lp = token_lp.accessor<double, 2>();
      for (size_t i = begin; i < end; ++i) {
        const int64_t row = static_cast<int64_t>(i - begin);
        const int64_t total = static_cast<int64_t>(sequences[i].size());
        ContinuationScore score;
        for (int64_t pos = prompt_len; pos < total; ++pos) {
          score.token_log_probs.push_back(lp[row][pos - 1]);
          score.log_probability += lp[row][pos - 1];
        }
        score.num_tokens = total - prompt_len;
        score.mean_token_probability =
            std::exp(score.log_probability / static_cast<double>(score.num_tokens));
        scores.push_back(std::move(score));
      }
      return absl::OkStatus();
    }));
  }
  return scores;
}

}  // namespace unlearning::core
