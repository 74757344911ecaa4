// bench_flat_step: times one FLAT training step of a causal LM in LibTorch (C++), for comparison
// with the same step in Python PyTorch (bench/flat_step.py; bench/run_bench.sh runs both).
//
// One step = forward on a forget batch (question + true answer) and on a template batch (same
// questions + a refusal answer), the FLAT-KL loss (per-example form, core/methods/losses.h:
// L = mean_b[-P̄e_b + exp(P̄f_b - 1)], P̄ = mean answer-token probability), backward, AdamW step.
//
// Prints one JSON object on stdout: median/min/max step time, matmul FLOPs per step (forward +
// backward), achieved GFLOP/s, and (with --peak) the 1024x1024 float32 matmul rate measured in the
// same process, plus the first step's loss (to check that Python computed the same thing).
//
// Shapes: B = batch, T = sequence length, V = vocab size, C = hidden size.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "core/common/status_macros.h"
#include "core/common/threads.h"
#include "core/common/torch_status.h"
#include "core/data/text_example.h"
#include "core/io/safetensors.h"
#include "core/methods/losses.h"
#include "core/models/causal_lm.h"

namespace unlearning::core {
namespace {

// The template ("good") answers paired with forget questions, as FLAT's released code does.
constexpr const char* kTemplates[] = {"I don't know.", "I'm not sure about that.",
                                      "I have no information on that.",
                                      "I cannot answer that question."};

struct Args {
  std::string model;
  std::string forget;
  std::string dump_batch;
  int threads = 1;
  int64_t batch_size = 8;
  int repeats = 10;
  int warmup = 2;
  bool peak = false;
  double lr = 1e-5;
};

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Matmul FLOPs of one forward pass over a [B, T] batch (padded positions included, since they are
// computed): 2 * (matmul weights) per token for the projections and the LM head, plus
// 2 * 2 * T * C per token per layer for Q K^T and attn V (full T x T, causal mask applied after).
double ForwardMatmulFlops(const LlamaConfig& c, int64_t batch, int64_t length) {
  const double kv_dim = static_cast<double>(c.num_key_value_heads * c.head_dim());
  const double hidden = static_cast<double>(c.hidden_size);
  const double per_layer = 2 * hidden * hidden + 2 * hidden * kv_dim +
                           3 * hidden * static_cast<double>(c.intermediate_size);
  const double weights =
      per_layer * c.num_hidden_layers + hidden * static_cast<double>(c.vocab_size);
  const double tokens = static_cast<double>(batch * length);
  const double attention = 4.0 * static_cast<double>(length) * hidden * c.num_hidden_layers;
  return tokens * (2 * weights + attention);
}

// float32 1024x1024 matmul rate (GFLOP/s), median over 20 runs.
double MatmulPeakGflops() {
  torch::manual_seed(0);
  const torch::Tensor a = torch::randn({1024, 1024});
  const torch::Tensor b = torch::randn({1024, 1024});
  for (int i = 0; i < 3; ++i) (void)a.matmul(b);
  std::vector<double> times;
  for (int i = 0; i < 20; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const torch::Tensor c = a.matmul(b);
    (void)c.data_ptr<float>();
    times.push_back(Seconds(start));
  }
  return 2.0 * 1024 * 1024 * 1024 / Median(times) / 1e9;
}

absl::Status Run(const Args& args) {
  const ThreadConfig threads = ConfigureThreads(args.threads);
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> model, CausalLm::Load(args.model, torch::kCPU));
  UNL_ASSIGN_OR_RETURN(std::vector<TextExample> forget, ReadJsonl(args.forget));
  if (forget.empty()) return absl::InvalidArgumentError("empty forget set");
  std::vector<EncodedExample> forget_enc;
  std::vector<EncodedExample> template_enc;
  for (int64_t i = 0; i < args.batch_size; ++i) {
    const TextExample& ex = forget[i % forget.size()];
    forget_enc.push_back(EncodeQa(model->tokenizer(), ex.question, ex.answer));
    template_enc.push_back(EncodeQa(model->tokenizer(), ex.question, kTemplates[i % 4]));
  }
  const int64_t pad = model->tokenizer().pad_id();
  const TokenBatch fb = Collate(forget_enc, pad);
  const TokenBatch tb = Collate(template_enc, pad);
  if (!args.dump_batch.empty()) {
    UNL_RETURN_IF_ERROR(WriteSafetensors(args.dump_batch, {{"forget_ids", fb.input_ids},
                                                           {"forget_labels", fb.labels},
                                                           {"template_ids", tb.input_ids},
                                                           {"template_labels", tb.labels}}));
  }
  const LlamaConfig& config = model->config();
  const double step_flops =
      3.0 * (ForwardMatmulFlops(config, fb.input_ids.size(0), fb.input_ids.size(1)) +
             ForwardMatmulFlops(config, tb.input_ids.size(0), tb.input_ids.size(1)));

  LlamaForCausalLM& module = model->module();
  module->train();
  std::vector<double> times;
  double first_loss = 0.0;
  UNL_RETURN_IF_ERROR(TorchCall("flat step", [&] {
    torch::optim::AdamW optimizer(module->parameters(),
                                  torch::optim::AdamWOptions(args.lr).weight_decay(0.01));
    for (int i = 0; i < args.warmup + args.repeats; ++i) {
      const auto start = std::chrono::steady_clock::now();
      optimizer.zero_grad();
      const torch::Tensor forget_logits = module->forward(fb.input_ids);    // [B, Tf, V]
      const torch::Tensor template_logits = module->forward(tb.input_ids);  // [B, Te, V]
      const torch::Tensor loss =
          FlatLoss(FDivergence::kKl, MeanAnswerProbability(template_logits, tb.labels),
                   MeanAnswerProbability(forget_logits, fb.labels));
      loss.backward();
      optimizer.step();
      const double loss_value = loss.item<double>();
      if (i == 0) first_loss = loss_value;
      if (i >= args.warmup) times.push_back(Seconds(start));
    }
  }));
  const double median = Median(times);
  nlohmann::json out = {
      {"impl", "cpp"},
      {"threads", at::get_num_threads()},
      {"blas", BlasThreadingName(threads.blas)},
      {"batch", args.batch_size},
      {"forget_len", fb.input_ids.size(1)},
      {"template_len", tb.input_ids.size(1)},
      {"parameters", model->num_parameters()},
      {"repeats", args.repeats},
      {"median_s", median},
      {"min_s", *std::min_element(times.begin(), times.end())},
      {"max_s", *std::max_element(times.begin(), times.end())},
      {"step_gflop", step_flops / 1e9},
      {"gflops", step_flops / median / 1e9},
      {"first_loss", first_loss},
  };
  if (args.peak) out["peak_gflops"] = MatmulPeakGflops();
  std::cout << out.dump() << std::endl;
  return absl::OkStatus();
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) {
  unlearning::core::Args args;
  CLI::App app{"Time one FLAT training step of a causal LM (LibTorch)"};
  app.add_option("--model", args.model, "model directory")->required();
  app.add_option("--forget", args.forget, "forget JSONL")->required();
  app.add_option("--dump-batch", args.dump_batch, "write the batch as safetensors here");
  app.add_option("--threads", args.threads, "intra-op threads")->capture_default_str();
  app.add_option("--batch-size", args.batch_size)->capture_default_str();
  app.add_option("--repeats", args.repeats)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", args.warmup)->capture_default_str();
  app.add_option("--lr", args.lr)->capture_default_str();
  app.add_flag("--peak", args.peak, "also measure the 1024x1024 matmul rate");
  CLI11_PARSE(app, argc, argv);
  const absl::Status status = unlearning::core::Run(args);
  if (!status.ok()) {
    std::cerr << "bench_flat_step: " << status << "\n";
    return 1;
  }
  return 0;
}
