// bench_uld: ULD's two cost claims, each measured side by side in one process (bench/uld_bench.sh
// runs it on the demo LM).
//
// 1. Training step. ULD trains only the LoRA factors of an assistant (the target's embeddings,
//    first K blocks, final norm and head, frozen and shared; core/methods/uld/uld.h); NPO trains
//    the full model (core/methods/baselines/npo.cc). One step = forward, loss, backward, gradient
//    clipping (max norm 1, as RunTrainingLoop), AdamW step, on the same token batches: a forget
//    batch F and a retain batch R of --batch-size examples each (QA + EOS, EncodeQa). Variants:
//      uld_k<K>  CE(assistant(F)) + retain_weight · KL(U ‖ p_assistant(R))  (the method's loss;
//                its D′_f/D′_r would add paraphrases and perturbed answers to F and R, here the
//                same F and R as NPO so that only the model differs)
//      npo       NPO loss on F with the reference log-probabilities precomputed (the project's
//                NpoMethod: retain_weight 0, the frozen reference is run once per request)
//      npo_ref   npo plus the frozen reference's forward on F every step (the reference
//                implementations of NPO, which the ULD paper timed)
//      npo_rt    npo plus CE on R (NpoMethod with retain_weight 1): the same F and R tokens as ULD
//      uld_aug_k<K> uld_k<K> on the method's own batches for the same forget examples: D′_f =
//                each question and its paraphrased questions, D′_r = its perturbed answers plus the
//                retain batch (UldMethod::StepLoss with its defaults; more rows than F and R)
//    The variants run round-robin, one step each per round, after --warmup rounds; median over
//    --repeats rounds. The epoch (every forget example once, in batches of --batch-size, each with
//    its retain batch) is timed the same way over --epoch-repeats rounds.
// 2. Generation. Greedy Generate (core/app/text_inference.h, EOS ignored so every run produces
//    --max-tokens tokens) of the first --prompts forget questions (QA format), the target alone vs
//    the composite target − α·assistant (core/models/logit_difference.h) with a freshly
//    initialised assistant of K blocks; round-robin, median tokens/s over --gen-repeats rounds.
//    For the breakdown, the assistant alone is generated from in the same rounds, and the
//    combination step (LogitDifferenceLm::Combine on one position) is timed on its own.
//
// Prints one JSON object per measurement (one line each) on stdout: {"measurement": "config"},
// then "step", "epoch" and "generate" rows with medians and the ratios (npo/uld for training,
// composite/target for generation: both the ratio of medians and the median of per-round ratios).
//
// Shapes: B = batch, T = sequence length, V = vocab size.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "core/app/text_inference.h"
#include "core/common/status_macros.h"
#include "core/common/threads.h"
#include "core/common/torch_status.h"
#include "core/data/text_example.h"
#include "core/methods/losses.h"
#include "core/methods/uld/uld.h"
#include "core/models/causal_lm.h"
#include "core/models/logit_difference.h"

namespace unlearning::core {
namespace {

struct Args {
  std::string model;
  std::string forget;  // default: <model>/../data/forget.jsonl
  std::string retain;  // default: <model>/../data/retain.jsonl
  std::vector<std::string> layers = {"default", "1", "half"};
  int threads = 1;
  int64_t batch_size = 8;  // TextTrainingOptions' default
  int repeats = 10;
  int warmup = 2;
  int epoch_repeats = 5;
  int64_t prompts = 4;
  int64_t max_tokens = 64;
  int gen_repeats = 7;
  double retain_weight = 5.0;  // UldParams' default
  double npo_beta = 0.1;       // NpoParams' default
  bool skip_train = false;
  bool skip_generate = false;
};

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A batch as the methods collate it, plus the real-token mask UniformKl needs.
struct Batch {
  TokenBatch tokens;
  torch::Tensor real;  // [B, T] bool
};

Batch MakeBatch(const CausalLm& model, const std::vector<EncodedExample>& examples) {
  Batch b;
  b.tokens = Collate(examples, model.pad_id(), model.max_context());
  const int64_t t = b.tokens.input_ids.size(1);
  std::vector<int64_t> lengths;
  for (const EncodedExample& e : examples) {
    lengths.push_back(std::min<int64_t>(static_cast<int64_t>(e.ids.size()), t));
  }
  b.real = torch::arange(t, torch::kInt64)
               .unsqueeze(0)
               .lt(torch::tensor(lengths, torch::kInt64).unsqueeze(1));
  return b;
}

// Synthetic QA examples when no JSONL is given and the model directory has no data beside it.
std::vector<TextExample> SyntheticExamples(const std::string& tag, int64_t n) {
  std::vector<TextExample> out;
  for (int64_t i = 0; i < n; ++i) {
    TextExample e;
    e.question = absl::StrCat("What is the ", tag, " fact number ", i, " about Ada Quill?");
    e.answer = absl::StrCat("Ada Quill's ", tag, " fact ", i, " is that she lived in Vale ", i * 7,
                            " and wrote poems about rivers.");
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::vector<TextExample>> Examples(const std::string& given,
                                                  const std::string& model_dir,
                                                  const std::string& name) {
  std::string path = given;
  if (path.empty()) {
    const std::string guess = model_dir + "/../data/" + name + ".jsonl";
    if (std::FILE* f = std::fopen(guess.c_str(), "r")) {
      std::fclose(f);
      path = guess;
    }
  }
  if (path.empty()) return SyntheticExamples(name, 32);
  return ReadJsonl(path);
}

// One trainable variant: a step on (forget batch, retain batch) returning the loss.
struct Variant {
  std::string name;
  int64_t k = 0;  // ULD assistant blocks; 0 for NPO
  std::unique_ptr<CausalLm> model;
  std::vector<torch::Tensor> params;  // the trained ones
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::function<torch::Tensor(CausalLm&, const Batch&, const Batch&, size_t)> loss;
  std::vector<double> step_s;
  std::vector<double> epoch_s;
  int64_t trained_parameters = 0;
  // The batches it trains on (null: the shared F and R batches).
  const std::vector<Batch>* forget_batches = nullptr;
  const std::vector<Batch>* retain_batches = nullptr;
};

void Step(Variant& v, const Batch& f, const Batch& r, size_t batch_index) {
  v.optimizer->zero_grad();
  const torch::Tensor loss = v.loss(*v.model, f, r, batch_index);
  loss.backward();
  torch::nn::utils::clip_grad_norm_(v.params, 1.0);
  v.optimizer->step();
  (void)loss.item<double>();
}

absl::StatusOr<std::vector<int64_t>> ResolveLayers(const std::vector<std::string>& specs,
                                                   int64_t layers) {
  std::vector<int64_t> out;
  for (const std::string& s : specs) {
    int64_t k = 0;
    if (s == "default") {
      k = std::max<int64_t>(1, layers / 4);  // UldMethod::AssistantConfig
    } else if (s == "half") {
      k = std::max<int64_t>(1, layers / 2);
    } else {
      const size_t digits = s.find_first_not_of("0123456789");
      if (s.empty() || digits != std::string::npos || s.size() > 9) {
        return absl::InvalidArgumentError(
            absl::StrCat("--layers: '", s, "' is not a number, 'default' or 'half'"));
      }
      k = std::stoll(s);
    }
    k = std::clamp<int64_t>(k, 1, layers);
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  }
  return out;
}

absl::Status Train(const Args& args, const CausalLm& target, const std::vector<int64_t>& ks,
                   const std::vector<TextExample>& forget, const std::vector<TextExample>& retain) {
  // The epoch's batches: every forget example once, each batch paired with the next retain
  // examples (cycled), as RetainBatchSchedule pairs one retain example per forget example.
  const Tokenizer& tok = target.tokenizer();
  std::vector<Batch> fbatches, rbatches, faug, raug;
  const int64_t nf = static_cast<int64_t>(forget.size());
  const int64_t nr = static_cast<int64_t>(retain.size());
  for (int64_t start = 0; start < nf; start += args.batch_size) {
    std::vector<EncodedExample> f, r;
    for (int64_t i = start; i < std::min(nf, start + args.batch_size); ++i) {
      f.push_back(EncodeQa(tok, forget[i].question, forget[i].answer, /*add_eos=*/true));
      const TextExample& re = retain[static_cast<size_t>(i % nr)];
      r.push_back(EncodeQa(tok, re.question, re.answer, /*add_eos=*/true));
    }
    fbatches.push_back(MakeBatch(target, f));
    rbatches.push_back(MakeBatch(target, r));
    // The method's own D′_f and D′_r for the same forget examples (UldMethod::StepLoss):
    // each question with its paraphrases, and its perturbed answers plus the retain examples.
    std::vector<EncodedExample> remember, uniform;
    for (int64_t i = start; i < std::min(nf, start + args.batch_size); ++i) {
      const TextExample& e = forget[static_cast<size_t>(i)];
      remember.push_back(EncodeQa(tok, e.question, e.answer, /*add_eos=*/true));
      for (const std::string& q : e.paraphrased_questions) {
        remember.push_back(EncodeQa(tok, q, e.answer, /*add_eos=*/true));
      }
      for (const std::string& a : e.perturbed_answers) {
        uniform.push_back(EncodeQa(tok, e.question, a, /*add_eos=*/true));
      }
    }
    uniform.insert(uniform.end(), r.begin(), r.end());
    faug.push_back(MakeBatch(target, remember));
    raug.push_back(MakeBatch(target, uniform));
  }
  // NPO's reference log-probabilities, computed once as NpoMethod::Prepare does.
  std::vector<torch::Tensor> reference_logprob;
  for (const Batch& f : fbatches) {
    torch::Tensor logprob;  // [B]
    {
      c10::InferenceMode inference;
      logprob = SequenceLogProb(target.Logits(f.tokens.input_ids), f.tokens.labels);
    }
    reference_logprob.push_back(logprob.clone());  // a normal tensor, usable with autograd
  }

  std::vector<Variant> variants;
  for (const bool aug : {false, true}) {
    for (int64_t k : ks) {
      Variant v;
      v.name = absl::StrCat(aug ? "uld_aug_k" : "uld_k", k);
      v.k = k;
      if (aug) {
        v.forget_batches = &faug;
        v.retain_batches = &raug;
      }
      UldAssistantConfig config;
      config.num_layers = k;
      UNL_ASSIGN_OR_RETURN(v.model, MakeUldAssistant(target, config, /*seed=*/0));
      const double w = args.retain_weight;
      v.loss = [w](CausalLm& m, const Batch& f, const Batch& r, size_t) {
        torch::Tensor loss =
            TokenCrossEntropy(m.module()->forward(f.tokens.input_ids), f.tokens.labels);
        return loss + w * UniformKl(m.module()->forward(r.tokens.input_ids), r.real);
      };
      variants.push_back(std::move(v));
    }
  }
  const double beta = args.npo_beta;
  for (const std::string name : {"npo", "npo_ref", "npo_rt"}) {
    Variant v;
    v.name = name;
    v.model = target.CloneLm(torch::kCPU);
    for (torch::Tensor& p : v.model->module()->parameters()) p.set_requires_grad(true);
    const bool ref_forward = v.name == "npo_ref";
    const bool retain_term = v.name == "npo_rt";
    v.loss = [&target, &reference_logprob, beta, ref_forward, retain_term](
                 CausalLm& m, const Batch& f, const Batch& r, size_t i) {
      torch::Tensor ref = reference_logprob[i];
      if (ref_forward) {  // the frozen reference's forward, as the reference implementations do
        {
          c10::InferenceMode inference;
          ref = SequenceLogProb(target.Logits(f.tokens.input_ids), f.tokens.labels);
        }
        ref = ref.clone();
      }
      torch::Tensor loss = NpoLoss(
          SequenceLogProb(m.module()->forward(f.tokens.input_ids), f.tokens.labels), ref, beta);
      if (retain_term) {
        loss = loss + TokenCrossEntropy(m.module()->forward(r.tokens.input_ids), r.tokens.labels);
      }
      return loss;
    };
    variants.push_back(std::move(v));
  }
  for (Variant& v : variants) {
    if (v.forget_batches == nullptr) {
      v.forget_batches = &fbatches;
      v.retain_batches = &rbatches;
    }
    v.model->module()->train();
    for (const torch::Tensor& p : v.model->module()->parameters()) {
      if (p.requires_grad()) {
        v.params.push_back(p);
        v.trained_parameters += p.numel();
      }
    }
    const double lr = v.k > 0 ? UldMethod::kDefaultLearningRate : 1e-5;
    v.optimizer = std::make_unique<torch::optim::AdamW>(
        v.params, torch::optim::AdamWOptions(lr).weight_decay(0.01));
  }

  UNL_RETURN_IF_ERROR(TorchCall("training steps", [&] {
    for (int round = 0; round < args.warmup + args.repeats; ++round) {
      for (Variant& v : variants) {
        const auto start = std::chrono::steady_clock::now();
        Step(v, (*v.forget_batches)[0], (*v.retain_batches)[0], 0);
        if (round >= args.warmup) v.step_s.push_back(Seconds(start));
      }
    }
    for (int round = 0; round < args.epoch_repeats; ++round) {
      for (Variant& v : variants) {
        const auto start = std::chrono::steady_clock::now();
        for (size_t i = 0; i < fbatches.size(); ++i) {
          Step(v, (*v.forget_batches)[i], (*v.retain_batches)[i], i);
        }
        v.epoch_s.push_back(Seconds(start));
      }
    }
  }));

  const int64_t target_parameters = target.num_parameters();
  for (const char* what : {"step", "epoch"}) {
    const bool step = std::string(what) == "step";
    for (const Variant& v : variants) {
      if (v.k == 0) continue;
      const std::vector<double>& u = step ? v.step_s : v.epoch_s;
      nlohmann::json row = {{"measurement", what},
                            {"variant", v.name},
                            {"assistant_layers", v.k},
                            {"target_layers", target.config().num_hidden_layers},
                            {"trained_parameters", v.trained_parameters},
                            {"target_parameters", target_parameters},
                            {"rounds", u.size()},
                            {"batch_size", args.batch_size},
                            {"forget_rows", (*v.forget_batches)[0].tokens.input_ids.size(0)},
                            {"retain_rows", (*v.retain_batches)[0].tokens.input_ids.size(0)},
                            {"steps", step ? 1 : static_cast<int64_t>(fbatches.size())},
                            {"median_s", Median(u)},
                            {"min_s", *std::min_element(u.begin(), u.end())},
                            {"max_s", *std::max_element(u.begin(), u.end())}};
      for (const Variant& n : variants) {
        if (n.k != 0) continue;
        const std::vector<double>& s = step ? n.step_s : n.epoch_s;
        std::vector<double> per_round;
        for (size_t i = 0; i < s.size() && i < u.size(); ++i) per_round.push_back(s[i] / u[i]);
        row[n.name + "_median_s"] = Median(s);
        row[n.name + "_over_uld"] = Median(s) / Median(u);
        row[n.name + "_over_uld_per_round"] = Median(per_round);
      }
      std::cout << row.dump() << std::endl;
    }
  }
  return absl::OkStatus();
}

absl::Status GenerateBench(const Args& args, const std::shared_ptr<CausalLm>& target,
                           const std::vector<int64_t>& ks, const std::vector<TextExample>& forget) {
  std::vector<TextPrompt> prompts;
  for (int64_t i = 0; i < args.prompts && i < static_cast<int64_t>(forget.size()); ++i) {
    prompts.push_back({forget[static_cast<size_t>(i)].question, /*qa_format=*/true});
  }
  GenerateOptions options;
  options.max_new_tokens = args.max_tokens;
  options.temperature = 0.0;
  options.stop_at_eos = false;  // every run generates max_tokens tokens

  // Tokens per second of one pass over the prompts.
  auto pass = [&](const LanguageModel& lm) -> absl::StatusOr<std::pair<double, int64_t>> {
    int64_t tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const TextPrompt& p : prompts) {
      UNL_ASSIGN_OR_RETURN(TextGeneration g, Generate(lm, p, options, {}));
      tokens += static_cast<int64_t>(g.token_ids.size());
    }
    const double s = Seconds(start);
    return std::make_pair(static_cast<double>(tokens) / s, tokens);
  };

  std::vector<std::unique_ptr<LogitDifferenceLm>> composites;
  std::vector<std::shared_ptr<const CausalLm>> assistants;
  for (int64_t k : ks) {
    UldAssistantConfig config;
    config.num_layers = k;
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> assistant,
                         MakeUldAssistant(*target, config, /*seed=*/0));
    for (torch::Tensor& p : assistant->module()->parameters()) p.set_requires_grad(false);
    assistant->module()->eval();
    std::shared_ptr<const CausalLm> shared(std::move(assistant));
    assistants.push_back(shared);
    UNL_ASSIGN_OR_RETURN(std::unique_ptr<LogitDifferenceLm> composite,
                         LogitDifferenceLm::Stack(target, {shared, config}));
    composites.push_back(std::move(composite));
  }

  std::vector<double> target_tps;
  std::vector<std::vector<double>> composite_tps(ks.size()), assistant_tps(ks.size());
  int64_t tokens = 0;
  for (int round = 0; round < 1 + args.gen_repeats; ++round) {  // round 0: warm-up
    UNL_ASSIGN_OR_RETURN(auto t, pass(*target));
    if (round > 0) target_tps.push_back(t.first);
    tokens = t.second;
    for (size_t j = 0; j < ks.size(); ++j) {
      UNL_ASSIGN_OR_RETURN(auto c, pass(*composites[j]));
      if (round > 0) composite_tps[j].push_back(c.first);
      UNL_ASSIGN_OR_RETURN(auto a, pass(*assistants[j]));  // for the breakdown only
      if (round > 0) assistant_tps[j].push_back(a.first);
    }
  }
  // The combination alone (relative-top filter, centring, subtraction) on one position's logits,
  // as each decode step of the composite runs it: median microseconds per call.
  std::vector<double> combine_us;
  {
    c10::InferenceMode inference;
    const torch::Tensor tl = torch::randn({1, 1, target->vocab_size()});
    const torch::Tensor al = torch::randn({1, 1, target->vocab_size()});
    for (int i = 0; i < 2000; ++i) {
      const auto start = std::chrono::steady_clock::now();
      const torch::Tensor out = composites[0]->Combine(tl, {al}, /*generation=*/true);
      (void)out.data_ptr<float>();
      if (i >= 200) combine_us.push_back(Seconds(start) * 1e6);
    }
  }
  for (size_t j = 0; j < ks.size(); ++j) {
    const std::vector<double>& c = composite_tps[j];
    std::vector<double> per_round;
    for (size_t i = 0; i < c.size(); ++i) per_round.push_back(c[i] / target_tps[i]);
    nlohmann::json row = {{"measurement", "generate"},
                          {"assistant_layers", ks[j]},
                          {"target_layers", target->config().num_hidden_layers},
                          {"prompts", prompts.size()},
                          {"max_tokens", args.max_tokens},
                          {"tokens_per_pass", tokens},
                          {"rounds", c.size()},
                          {"target_tokens_per_s", Median(target_tps)},
                          {"composite_tokens_per_s", Median(c)},
                          {"assistant_alone_tokens_per_s", Median(assistant_tps[j])},
                          {"combine_us_per_call", Median(combine_us)},
                          {"composite_over_target", Median(c) / Median(target_tps)},
                          {"composite_over_target_per_round", Median(per_round)}};
    std::cout << row.dump() << std::endl;
  }
  return absl::OkStatus();
}

absl::Status Run(const Args& args) {
  const ThreadConfig threads = ConfigureThreads(args.threads);
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> loaded, CausalLm::Load(args.model, torch::kCPU));
  std::shared_ptr<CausalLm> target(std::move(loaded));
  target->module()->eval();
  for (torch::Tensor& p : target->module()->parameters()) p.set_requires_grad(false);
  UNL_ASSIGN_OR_RETURN(std::vector<TextExample> forget,
                       Examples(args.forget, args.model, "forget"));
  UNL_ASSIGN_OR_RETURN(std::vector<TextExample> retain,
                       Examples(args.retain, args.model, "retain"));
  if (forget.empty() || retain.empty()) {
    return absl::InvalidArgumentError("empty forget or retain set");
  }
  UNL_ASSIGN_OR_RETURN(const std::vector<int64_t> ks,
                       ResolveLayers(args.layers, target->config().num_hidden_layers));
  nlohmann::json config = {{"measurement", "config"},
                           {"model", args.model},
                           {"architecture", target->architecture()},
                           {"target_layers", target->config().num_hidden_layers},
                           {"hidden_size", target->config().hidden_size},
                           {"vocab_size", target->vocab_size()},
                           {"target_parameters", target->num_parameters()},
                           {"forget_examples", forget.size()},
                           {"retain_examples", retain.size()},
                           {"assistant_layers", ks},
                           {"threads", at::get_num_threads()},
                           {"threading", threads.Describe()}};
  std::cout << config.dump() << std::endl;
  if (!args.skip_train) UNL_RETURN_IF_ERROR(Train(args, *target, ks, forget, retain));
  if (!args.skip_generate) UNL_RETURN_IF_ERROR(GenerateBench(args, target, ks, forget));
  return absl::OkStatus();
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) {
  unlearning::core::Args args;
  CLI::App app{"ULD: assistant training step vs NPO, composite generation vs the target"};
  app.add_option("--model", args.model, "causal LM directory (Hugging Face layout)")->required();
  app.add_option("--forget", args.forget, "forget JSONL (default <model>/../data/forget.jsonl)");
  app.add_option("--retain", args.retain, "retain JSONL (default <model>/../data/retain.jsonl)");
  app.add_option("--layers", args.layers,
                 "assistant blocks K: numbers, 'default' (L/4, at least 1), 'half' (L/2)")
      ->capture_default_str();
  app.add_option("--threads", args.threads, "intra-op threads")->capture_default_str();
  app.add_option("--batch-size", args.batch_size)
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--repeats", args.repeats, "timed step rounds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", args.warmup, "untimed step rounds first")->capture_default_str();
  app.add_option("--epoch-repeats", args.epoch_repeats, "timed epoch rounds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--prompts", args.prompts, "generation prompts (the first forget questions)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-tokens", args.max_tokens, "tokens generated per prompt")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--gen-repeats", args.gen_repeats, "timed generation rounds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--retain-weight", args.retain_weight, "ULD's weight of the uniform term")
      ->capture_default_str();
  app.add_option("--npo-beta", args.npo_beta)->capture_default_str();
  app.add_flag("--skip-train", args.skip_train, "only the generation measurement");
  app.add_flag("--skip-generate", args.skip_generate, "only the training measurements");
  CLI11_PARSE(app, argc, argv);
  const absl::Status status = unlearning::core::Run(args);
  if (!status.ok()) {
    std::cerr << "bench_uld: " << status << "\n";
    return 1;
  }
  return 0;
}
