// unlearn-train: offline model creation and fine-tuning for the demo and for users' own QA data.
//
//   unlearn-train init --out DIR [--hidden 256 --layers 4 --heads 8 --kv-heads 4 --seed 0]
//   unlearn-train finetune --model DIR --data train.jsonl --out DIR2 [--epochs E --lr LR
//       --batch-size B --seed S --threads N --min-accuracy A --report FILE]
//   unlearn-train unlearn --model DIR --method NAME --forget forget.jsonl [--retain r.jsonl
//       --holdout h.jsonl --templates t.txt --param KEY=VALUE ... --out DIR2 --report FILE]
//   unlearn-train unlearn --model DIR --method NAME --forget-class C [--override-class O
//       --threshold FIGURE:COMPARISON:BOUND ...]   (image classifiers, diffusion models)
//   unlearn-train unlearn --model DIR --candidate DIR2 --forget ... (the same options, no
//       method: verifies a model unlearned elsewhere against its parent)
//
// `unlearn` runs one method offline through the server's own erasure pipeline
// (core/app/erasure_pipeline.h: same family and method registries, same verification), without a
// server: for research sweeps and for checking settings before a request is sent.
//
// Exit status: 0 on success, 1 on an error, 2 if the final answer-token accuracy is below
// --min-accuracy (finetune; the model is still written) or verification failed (unlearn).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <torch/types.h>

#include "core/app/erasure_pipeline.h"
#include "core/app/family_registry.h"
#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/common/status_macros.h"
#include "core/common/threads.h"
#include "core/data/text_example.h"
#include "core/methods/method_registry.h"
#include "core/models/causal_lm.h"
#include "core/text/tokenizer.h"
#include "core/train/finetune.h"
#include "core/verify/text_verification.h"

namespace unlearning::core {
namespace {

CancellationToken* g_cancel = nullptr;

extern "C" void HandleSigint(int) {
  if (g_cancel != nullptr) g_cancel->Cancel();
}

std::string FormatSeconds(double s) {
  const int64_t total = static_cast<int64_t>(std::llround(s));
  if (total >= 60) return absl::StrFormat("%dm%02ds", total / 60, total % 60);
  return absl::StrFormat("%ds", total);
}

// Prints one line per progress update: step, loss, elapsed time and ETA.
class PrintingSink : public ProgressSink {
 public:
  void OnProgress(const ProgressUpdate& u) override {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    // The epoch is shown only where the caller knows the epoch length (fine-tuning; a method's
    // steps per epoch are its own).
    const std::string epoch =
        steps_per_epoch_ > 0
            ? absl::StrFormat("  epoch %.1f", static_cast<double>(u.step) / steps_per_epoch_)
            : std::string();
    std::printf("step %lld/%lld%s  loss %.4f  elapsed %s  eta %s\n", static_cast<long long>(u.step),
                static_cast<long long>(u.total_steps), epoch.c_str(), u.loss,
                FormatSeconds(elapsed).c_str(), FormatSeconds(u.eta_seconds).c_str());
    std::fflush(stdout);
  }
  void set_steps_per_epoch(int64_t n) { steps_per_epoch_ = n; }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  int64_t steps_per_epoch_ = 0;
};

struct InitArgs {
  std::string out;
  int64_t hidden = 256;
  int64_t layers = 4;
  int64_t heads = 8;
  int64_t kv_heads = 4;
  int64_t intermediate = 0;  // 0: 8/3 * hidden rounded up to a multiple of 16
  int64_t max_positions = 512;
  std::string dtype = "float32";
  uint64_t seed = 0;
};

absl::Status RunInit(const InitArgs& args) {
  LlamaConfig config;
  config.hidden_size = args.hidden;
  config.num_hidden_layers = args.layers;
  config.num_attention_heads = args.heads;
  config.num_key_value_heads = args.kv_heads;
  config.intermediate_size =
      args.intermediate > 0 ? args.intermediate : (args.hidden * 8 / 3 + 15) / 16 * 16;
  config.max_position_embeddings = args.max_positions;
  config.torch_dtype = args.dtype;
  // Validate through the same parser the loader uses.
  UNL_ASSIGN_OR_RETURN(config, LlamaConfig::FromJson(config.ToJson()));
  std::unique_ptr<CausalLm> model =
      CausalLm::Create(config, std::make_unique<ByteTokenizer>(), torch::kCPU, args.seed);
  std::error_code ec;
  std::filesystem::create_directories(args.out, ec);
  if (ec) return absl::InternalError(absl::StrFormat("mkdir %s: %s", args.out, ec.message()));
  UNL_RETURN_IF_ERROR(model->Save(args.out));
  std::printf("initialised %s: %lld parameters (hidden %lld, layers %lld, heads %lld/%lld)\n",
              args.out.c_str(), static_cast<long long>(model->num_parameters()),
              static_cast<long long>(config.hidden_size),
              static_cast<long long>(config.num_hidden_layers),
              static_cast<long long>(config.num_attention_heads),
              static_cast<long long>(config.num_key_value_heads));
  return absl::OkStatus();
}

struct FinetuneArgs {
  std::string model;
  std::string data;
  std::string eval_data;  // default: data
  std::string out;
  std::string report;
  int threads = 0;
  double min_accuracy = 0.0;
  FinetuneOptions options;
};

// Returns the accuracy (or an error).
absl::StatusOr<double> RunFinetune(const FinetuneArgs& args) {
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> model, CausalLm::Load(args.model, torch::kCPU));
  UNL_ASSIGN_OR_RETURN(std::vector<TextExample> train, ReadJsonl(args.data));
  std::vector<TextExample> eval;
  if (args.eval_data.empty()) {
    eval = train;
  } else {
    UNL_ASSIGN_OR_RETURN(eval, ReadJsonl(args.eval_data));
  }
  const int64_t steps_per_epoch =
      (static_cast<int64_t>(train.size()) + args.options.batch_size - 1) /
      std::max<int64_t>(1, args.options.batch_size);
  std::printf(
      "fine-tuning %s (%lld parameters) on %zu examples: %lld epochs x %lld steps, batch %lld, "
      "lr %g, %d threads\n",
      args.model.c_str(), static_cast<long long>(model->num_parameters()), train.size(),
      static_cast<long long>(args.options.epochs), static_cast<long long>(steps_per_epoch),
      static_cast<long long>(args.options.batch_size), args.options.learning_rate,
      at::get_num_threads());
  std::fflush(stdout);

  CancellationToken cancel;
  g_cancel = &cancel;
  std::signal(SIGINT, HandleSigint);
  std::signal(SIGTERM, HandleSigint);
  PrintingSink sink;
  sink.set_steps_per_epoch(steps_per_epoch);
  absl::StatusOr<FinetuneResult> result = FinetuneQa(*model, train, args.options, &sink, &cancel);
  g_cancel = nullptr;
  UNL_RETURN_IF_ERROR(result.status());

  UNL_ASSIGN_OR_RETURN(TokenAccuracy acc, MeasureAnswerAccuracy(*model, eval));
  std::error_code ec;
  std::filesystem::create_directories(args.out, ec);
  if (ec) return absl::InternalError(absl::StrFormat("mkdir %s: %s", args.out, ec.message()));
  UNL_RETURN_IF_ERROR(model->Save(args.out));

  const double tokens_per_s = result->seconds > 0
                                  ? static_cast<double>(result->answer_tokens_per_epoch) *
                                        args.options.epochs / result->seconds
                                  : 0.0;
  std::printf("trained %lld steps in %s (loss %.4f -> %.4f, %.0f answer tokens/s)\n",
              static_cast<long long>(result->loop.steps), FormatSeconds(result->seconds).c_str(),
              result->loop.first_loss, result->loop.last_loss, tokens_per_s);
  std::printf("final answer-token accuracy: %.4f (%lld/%lld)\n", acc.accuracy(),
              static_cast<long long>(acc.correct), static_cast<long long>(acc.total));
  std::printf("saved %s\n", args.out.c_str());
  if (!args.report.empty()) {
    nlohmann::json report = {
        {"accuracy", acc.accuracy()},
        {"correct_tokens", acc.correct},
        {"answer_tokens", acc.total},
        {"examples", result->examples},
        {"steps", result->loop.steps},
        {"epochs", args.options.epochs},
        {"first_loss", result->loop.first_loss},
        {"last_loss", result->loop.last_loss},
        {"train_seconds", result->seconds},
        {"parameters", model->num_parameters()},
        {"threads", at::get_num_threads()},
    };
    std::ofstream f(args.report);
    f << report.dump(2) << "\n";
    if (!f) return absl::InternalError(absl::StrFormat("cannot write %s", args.report));
  }
  std::fflush(stdout);
  return acc.accuracy();
}

struct UnlearnArgs {
  std::string model;
  std::string method;
  std::string candidate;  // verify this model (unlearned elsewhere) instead of running a method
  std::vector<std::string> params;  // KEY=VALUE
  std::string forget;
  std::string retain;
  std::string holdout;
  std::string templates;  // one template answer per line
  std::string out;
  std::string report;
  int threads = 0;
  int show = 0;                              // greedy answers before/after printed per probe set
  VerificationThresholds thresholds;         // text shorthand (legacy three-check policy)
  bool shorthand = false;                    // --max-forget-ratio or --min-retain-ratio given
  std::vector<std::string> threshold_specs;  // FIGURE:COMPARISON:BOUND, replaces the defaults
  std::vector<int64_t> forget_classes;       // image classifier / diffusion payloads
  int64_t override_class = -1;
  int64_t replay_per_class = 0;
};

// KEY=VALUE pairs as a JSON object. VALUE is read as JSON when it parses (numbers, true/false,
// quoted strings) and as a plain string otherwise.
absl::StatusOr<nlohmann::json> ParseParams(const std::vector<std::string>& pairs) {
  nlohmann::json params = nlohmann::json::object();
  for (const std::string& pair : pairs) {
    const size_t eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--param '%s': expected KEY=VALUE, e.g. learning_rate=2e-5", pair));
    }
    const std::string value = pair.substr(eq + 1);
    nlohmann::json parsed = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    params[pair.substr(0, eq)] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
  }
  return params;
}

absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrFormat("cannot open %s", path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// Greedy answer (up to the first newline) of `model` to `question`.
std::string Greedy(const CausalLm& model, const std::string& question, int64_t max_tokens) {
  const Tokenizer& tok = model.tokenizer();
  GenerateOptions options;
  options.max_new_tokens = max_tokens;
  std::vector<int64_t> kept;
  absl::Status status = model
                            .Generate(EncodeQa(tok, question, "", /*add_eos=*/false).ids, options,
                                      [&](int64_t id) {
                                        if (tok.Decode({id}).find('\n') != std::string::npos)
                                          return false;
                                        kept.push_back(id);
                                        return true;
                                      })
                            .status();
  return status.ok() ? tok.Decode(kept) : "<" + status.ToString() + ">";
}

// Prints the first `n` examples of `examples`: question, true answer, greedy answers before and
// after.
void ShowAnswers(const char* split, const std::vector<TextExample>& examples, int n,
                 const CausalLm& before, const CausalLm& after) {
  for (int i = 0; i < n && i < static_cast<int>(examples.size()); ++i) {
    const TextExample& e = examples[static_cast<size_t>(i)];
    const int64_t budget = static_cast<int64_t>(e.answer.size()) + 16;
    std::printf("[%s] Q: %s\n  true:   %s\n  before: %s\n  after:  %s\n", split, e.question.c_str(),
                e.answer.c_str(), Greedy(before, e.question, budget).c_str(),
                Greedy(after, e.question, budget).c_str());
  }
}

// "FIGURE:COMPARISON:BOUND" (e.g. "acc_r:ratio_at_least:0.9") as a Threshold.
absl::StatusOr<Threshold> ParseThreshold(const std::string& text) {
  const size_t a = text.find(':');
  const size_t b = a == std::string::npos ? a : text.find(':', a + 1);
  if (b == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--threshold '%s': expected FIGURE:COMPARISON:BOUND, e.g. "
                        "forget.answer_probability:ratio_at_most:0.25",
                        text));
  }
  Threshold t;
  t.figure = text.substr(0, a);
  UNL_ASSIGN_OR_RETURN(t.comparison, ParseComparison(text.substr(a + 1, b - a - 1)));
  char* end = nullptr;
  const std::string bound = text.substr(b + 1);
  t.bound = std::strtod(bound.c_str(), &end);
  if (bound.empty() || end == nullptr || *end != '\0') {
    return absl::InvalidArgumentError(
        absl::StrFormat("--threshold '%s': bound '%s' is not a number", text, bound));
  }
  t.required = true;
  return t;
}

// The request's payload for the model's family, from the command line's files and lists.
absl::StatusOr<ErasureData> ReadErasureData(const UnlearnArgs& args, ModelFamily family) {
  ErasureData data;
  data.family = family;
  if (family == ModelFamily::kCausalLm) {
    if (args.forget.empty()) {
      return absl::InvalidArgumentError("--forget FILE is required for a causal LM");
    }
    UNL_ASSIGN_OR_RETURN(data.forget, ReadJsonl(args.forget));
    if (!args.retain.empty()) {
      UNL_ASSIGN_OR_RETURN(data.retain, ReadJsonl(args.retain));
    }
    if (!args.templates.empty()) {
      UNL_ASSIGN_OR_RETURN(data.templates, ReadLines(args.templates));
    }
  } else if (family == ModelFamily::kImageClassifier) {
    data.classes.forget_classes = args.forget_classes;
    data.classes.replay_per_class = args.replay_per_class;
  } else {
    data.generation.forget_classes = args.forget_classes;
    data.generation.override_class = args.override_class;
  }
  return data;
}

// Returns whether verification passed.
absl::StatusOr<bool> RunUnlearn(const UnlearnArgs& args) {
  UNL_ASSIGN_OR_RETURN(nlohmann::json params, ParseParams(args.params));
  const FamilyRegistry& families = FamilyRegistry::Builtin();
  UNL_ASSIGN_OR_RETURN(const FamilySpec* family, families.Recognise(args.model));
  UNL_ASSIGN_OR_RETURN(ErasureData data, ReadErasureData(args, family->family));
  std::vector<Threshold> thresholds;
  for (const std::string& t : args.threshold_specs) {
    UNL_ASSIGN_OR_RETURN(Threshold parsed, ParseThreshold(t));
    thresholds.push_back(parsed);
  }
  if (thresholds.empty() && args.shorthand && family->family == ModelFamily::kCausalLm) {
    thresholds = args.thresholds.List();
  }
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<Model> parent, family->load(args.model, torch::kCPU));
  ModelProbes probes;
  if (family->load_probes) {
    UNL_ASSIGN_OR_RETURN(probes, family->load_probes(args.model));
  }
  if (family->family == ModelFamily::kCausalLm) {
    // Offline, the probe sets are the command line's: the retain set (if any) and --holdout.
    probes.text_retain.clear();
    probes.text_holdout.clear();
    if (!args.holdout.empty()) {
      UNL_ASSIGN_OR_RETURN(probes.text_holdout, ReadJsonl(args.holdout));
    }
  }
  if (args.method.empty() == args.candidate.empty()) {
    return absl::InvalidArgumentError(
        "give either --method (run it, then verify) or --candidate DIR (verify a model unlearned "
        "elsewhere against --model), not both");
  }

  CancellationToken cancel;
  g_cancel = &cancel;
  std::signal(SIGINT, HandleSigint);
  std::signal(SIGTERM, HandleSigint);
  ErasureOutcome outcome;
  std::unique_ptr<Model> candidate;
  nlohmann::json effective_params = nlohmann::json::object();
  if (!args.candidate.empty()) {
    if (!params.empty()) return absl::InvalidArgumentError("--param needs --method");
    UNL_ASSIGN_OR_RETURN(const FamilySpec* candidate_family, families.Recognise(args.candidate));
    if (candidate_family->family != family->family) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--candidate %s is a %s, --model %s a %s", args.candidate,
          ModelFamilyName(candidate_family->family), args.model, ModelFamilyName(family->family)));
    }
    UNL_ASSIGN_OR_RETURN(candidate, family->load(args.candidate, torch::kCPU));
    if (thresholds.empty()) {
      thresholds = family->verifier->DefaultThresholds();
    } else {
      UNL_RETURN_IF_ERROR(ValidateThresholds(thresholds, family->verifier->FigureNames(),
                                             ModelFamilyName(family->family)));
    }
    std::printf("verifying %s against %s (%s)\n", args.candidate.c_str(), args.model.c_str(),
                ModelFamilyName(family->family));
    std::fflush(stdout);
    VerificationInputs inputs;
    inputs.before = parent.get();
    inputs.after = candidate.get();
    inputs.data = &data;
    inputs.probes = &probes;
    inputs.thresholds = thresholds;
    inputs.cancel = &cancel;
    const auto start = std::chrono::steady_clock::now();
    UNL_ASSIGN_OR_RETURN(outcome.report, family->verifier->Verify(inputs));
    outcome.verify_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::optional<ErasurePlan> plan;
  if (!args.method.empty()) {
    UNL_ASSIGN_OR_RETURN(
        plan, PlanErasure(MethodRegistry::Builtin(), families, family->family, args.method, params,
                          data, std::move(thresholds), parent.get()));
    effective_params = plan->method->EffectiveParams();
  }

  const std::string payload =
      family->family == ModelFamily::kCausalLm
          ? absl::StrFormat("%zu forget, %zu retain examples", data.forget.size(),
                            data.retain.size())
          : absl::StrFormat("forget classes %s", absl::StrJoin(args.forget_classes, ","));
  if (plan.has_value()) {
    std::printf("%s on %s (%s): %s, %lld steps, %d threads\nparams %s\n", args.method.c_str(),
                args.model.c_str(), ModelFamilyName(family->family), payload.c_str(),
                static_cast<long long>(plan->method->TotalSteps(data)), at::get_num_threads(),
                effective_params.dump().c_str());
    std::fflush(stdout);
    PrintingSink sink;
    UNL_ASSIGN_OR_RETURN(outcome,
                         RunErasure(*plan, *parent, probes, data, torch::kCPU, &sink, &cancel));
  }
  g_cancel = nullptr;
  const Model* after = candidate != nullptr ? candidate.get() : outcome.candidate.model.get();
  const VerificationReport& report = outcome.report;

  if (outcome.already_absent) {
    std::printf(
        "\nalready absent: the parent already meets the thresholds on this forget set; "
        "nothing was trained\n");
  }
  for (const TierCoverage& t : report.tiers) {
    std::printf("%s %s: %s\n", TierName(t.tier), t.computed ? "computed" : "not computed",
                t.basis.c_str());
  }
  std::printf("evaluation suite %s\n", report.suite_sha256.c_str());
  std::printf("\n%-38s %4s %10s %10s %9s\n", "figure", "tier", "before", "after", "ratio");
  for (const FigureValue& f : report.figures) {
    const std::string ratio =
        f.before != 0.0 ? absl::StrFormat("%9.3f", f.after / f.before) : std::string(9, ' ');
    std::printf("%-38s %4s %10.4f %10.4f %s\n", f.name.c_str(), TierName(f.tier), f.before, f.after,
                ratio.c_str());
  }
  for (const std::string& check : report.checks) std::printf("check: %s\n", check.c_str());
  const auto* before_lm = dynamic_cast<const CausalLm*>(parent.get());
  const auto* after_lm = dynamic_cast<const CausalLm*>(after);
  if (args.show > 0 && before_lm != nullptr && after_lm != nullptr && !outcome.already_absent) {
    std::printf("\n");
    ShowAnswers("forget", data.forget, args.show, *before_lm, *after_lm);
    ShowAnswers("retain", data.retain, args.show, *before_lm, *after_lm);
    ShowAnswers("holdout", probes.text_holdout, args.show, *before_lm, *after_lm);
  }
  std::printf("verification %s; method ran %s, verification %s\n",
              report.passed ? "PASSED" : "FAILED", FormatSeconds(outcome.method_seconds).c_str(),
              FormatSeconds(outcome.verify_seconds).c_str());
  if (!args.out.empty() && plan.has_value() && !outcome.already_absent) {
    std::error_code ec;
    std::filesystem::create_directories(args.out, ec);
    if (ec) return absl::InternalError(absl::StrFormat("mkdir %s: %s", args.out, ec.message()));
    UNL_RETURN_IF_ERROR(outcome.candidate.write(args.out));
    std::printf("saved %s (%s)\n", args.out.c_str(), ArtifactKindName(outcome.candidate.kind));
  }
  if (!args.report.empty()) {
    nlohmann::json figures = nlohmann::json::object();
    for (const FigureValue& f : report.figures) {
      figures[f.name] = {{"before", f.before}, {"after", f.after}, {"tier", TierName(f.tier)}};
    }
    nlohmann::json out = {{"method", args.method},
                          {"candidate", args.candidate},
                          {"family", ModelFamilyName(family->family)},
                          {"artifact_kind", outcome.already_absent || !plan.has_value()
                                                ? "none"
                                                : ArtifactKindName(outcome.candidate.kind)},
                          {"already_absent", outcome.already_absent},
                          {"suite_sha256", report.suite_sha256},
                          {"params", effective_params},
                          {"steps", outcome.steps},
                          {"method_seconds", outcome.method_seconds},
                          {"verify_seconds", outcome.verify_seconds},
                          {"passed", report.passed},
                          {"checks", report.checks},
                          {"figures", figures}};
    std::ofstream f(args.report);
    f << out.dump(2) << "\n";
    if (!f) return absl::InternalError(absl::StrFormat("cannot write %s", args.report));
  }
  std::fflush(stdout);
  return report.passed;
}

// Sets LibTorch's intra-op threads (0 = automatic, core::ConfigureThreads) and says what it chose;
// false (with a message) if `threads` < 0.
bool SetThreads(const char* command, int threads) {
  if (threads < 0) {
    std::cerr << "unlearn-train " << command << ": --threads must be >= 0 (0 = automatic)\n";
    return false;
  }
  std::cerr << "unlearn-train " << command << ": " << core::ConfigureThreads(threads).Describe()
            << "\n";
  return true;
}

// 0: one LibTorch thread per core, or 1 with the pthreads OpenBLAS (core::ConfigureThreads).
int DefaultThreads() { return 0; }

int Main(int argc, char** argv) {
  CLI::App app{"Create and fine-tune causal LMs for the unlearning service"};
  app.require_subcommand(1);

  InitArgs init;
  CLI::App* init_cmd = app.add_subcommand("init", "write a randomly initialised Llama model dir");
  init_cmd->add_option("--out", init.out, "output model directory")->required();
  init_cmd->add_option("--hidden", init.hidden, "hidden size")->capture_default_str();
  init_cmd->add_option("--layers", init.layers, "decoder layers")->capture_default_str();
  init_cmd->add_option("--heads", init.heads, "attention heads")->capture_default_str();
  init_cmd->add_option("--kv-heads", init.kv_heads, "key/value heads")->capture_default_str();
  init_cmd->add_option("--intermediate", init.intermediate, "MLP size (0: ~8/3 hidden)")
      ->capture_default_str();
  init_cmd->add_option("--max-positions", init.max_positions, "maximum sequence length")
      ->capture_default_str();
  init_cmd->add_option("--dtype", init.dtype, "stored dtype: float32|bfloat16|float16")
      ->capture_default_str();
  init_cmd->add_option("--seed", init.seed, "initialisation seed")->capture_default_str();

  FinetuneArgs ft;
  ft.threads = DefaultThreads();
  CLI::App* ft_cmd = app.add_subcommand("finetune", "fine-tune a model dir on QA JSONL");
  ft_cmd->add_option("--model", ft.model, "input model directory")->required();
  ft_cmd->add_option("--data", ft.data, "training JSONL (question/answer)")->required();
  ft_cmd->add_option("--out", ft.out, "output model directory")->required();
  ft_cmd->add_option("--eval-data", ft.eval_data, "accuracy JSONL (default: --data)");
  ft_cmd->add_option("--epochs", ft.options.epochs)->capture_default_str();
  ft_cmd->add_option("--lr", ft.options.learning_rate)->capture_default_str();
  ft_cmd->add_option("--batch-size", ft.options.batch_size)->capture_default_str();
  ft_cmd->add_option("--weight-decay", ft.options.weight_decay)->capture_default_str();
  ft_cmd->add_option("--warmup-epochs", ft.options.warmup_epochs)->capture_default_str();
  ft_cmd->add_option("--max-grad-norm", ft.options.max_grad_norm)->capture_default_str();
  ft_cmd->add_option("--seed", ft.options.seed, "shuffle seed")->capture_default_str();
  ft_cmd->add_option("--progress-every", ft.options.progress_every)->capture_default_str();
  ft_cmd
      ->add_option(
          "--threads", ft.threads,
          "LibTorch intra-op threads (0 = automatic: one per core, 1 with the pthreads OpenBLAS)")
      ->capture_default_str();
  ft_cmd
      ->add_option("--min-accuracy", ft.min_accuracy,
                   "exit 2 if the final answer-token accuracy is below this")
      ->capture_default_str();
  ft_cmd->add_option("--report", ft.report, "write a JSON summary here");

  UnlearnArgs ul;
  ul.threads = DefaultThreads();
  CLI::App* ul_cmd =
      app.add_subcommand("unlearn", "run an unlearning method offline and verify the result");
  ul_cmd->add_option("--model", ul.model, "input model directory")->required();
  ul_cmd->add_option("--method", ul.method, "method name, e.g. flat, gradient_difference");
  ul_cmd->add_option("--candidate", ul.candidate,
                     "instead of --method: verify this model directory (unlearned elsewhere) "
                     "against --model, with the same probes, thresholds and report");
  ul_cmd->add_option("--forget", ul.forget, "forget set JSONL (question/answer; causal LMs)");
  ul_cmd->add_option("--forget-class", ul.forget_classes,
                     "class id to forget (image classifiers, diffusion; repeatable)");
  ul_cmd
      ->add_option("--override-class", ul.override_class,
                   "diffusion: class the forget class should produce (-1: any other)")
      ->capture_default_str();
  ul_cmd
      ->add_option("--replay-per-class", ul.replay_per_class,
                   "image classifiers: replay samples per retained class (0: method default)")
      ->capture_default_str();
  ul_cmd->add_option("--threshold", ul.threshold_specs,
                     "FIGURE:COMPARISON:BOUND (repeatable; replaces the family's defaults)");
  ul_cmd->add_option("--retain", ul.retain, "retain set JSONL (also the retain probes)");
  ul_cmd->add_option("--holdout", ul.holdout, "holdout JSONL (membership-inference probes)");
  ul_cmd->add_option("--templates", ul.templates, "template answers, one per line (FLAT)");
  ul_cmd->add_option("--param", ul.params, "method parameter KEY=VALUE (repeatable)");
  ul_cmd->add_option("--out", ul.out, "write the unlearned model here");
  ul_cmd->add_option("--report", ul.report, "write a JSON report here");
  CLI::Option* max_forget =
      ul_cmd
          ->add_option("--max-forget-ratio", ul.thresholds.max_forget_probability_ratio,
                       "verification (legacy policy instead of the defaults): forget probability "
                       "after/before must be <= this")
          ->capture_default_str();
  CLI::Option* min_retain =
      ul_cmd
          ->add_option("--min-retain-ratio", ul.thresholds.min_retain_probability_ratio,
                       "verification (legacy policy instead of the defaults): retain probability "
                       "after/before must be >= this")
          ->capture_default_str();
  ul_cmd->add_option("--show", ul.show, "print greedy answers before/after for N probes per set")
      ->capture_default_str();
  ul_cmd
      ->add_option(
          "--threads", ul.threads,
          "LibTorch intra-op threads (0 = automatic: one per core, 1 with the pthreads OpenBLAS)")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  ul.shorthand = max_forget->count() > 0 || min_retain->count() > 0;

  if (*ul_cmd) {
    if (!SetThreads("unlearn", ul.threads)) return 1;
    absl::StatusOr<bool> passed = RunUnlearn(ul);
    if (!passed.ok()) {
      std::cerr << "unlearn-train unlearn: " << passed.status() << "\n";
      return 1;
    }
    return *passed ? 0 : 2;
  }

  if (*init_cmd) {
    absl::Status status = RunInit(init);
    if (!status.ok()) {
      std::cerr << "unlearn-train init: " << status << "\n";
      return 1;
    }
    return 0;
  }
  if (!SetThreads("finetune", ft.threads)) return 1;
  absl::StatusOr<double> accuracy = RunFinetune(ft);
  if (!accuracy.ok()) {
    std::cerr << "unlearn-train finetune: " << accuracy.status() << "\n";
    return 1;
  }
  if (*accuracy < ft.min_accuracy) {
    std::cerr << absl::StrFormat(
        "unlearn-train finetune: accuracy %.4f is below --min-accuracy %.4f\n", *accuracy,
        ft.min_accuracy);
    return 2;
  }
  return 0;
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) { return unlearning::core::Main(argc, argv); }
