// unlearnctl: command-line client of the machine-unlearning service (unlearnd).
// Subcommand wiring only; the commands live in commands.cc and erase.cc. See
// docs/cli.md.

#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_join.h"
#include <CLI/CLI.hpp>

#include "client/certificates.h"
#include "client/classify.h"
#include "client/commands.h"
#include "client/connection.h"
#include "client/credentials.h"
#include "client/erase.h"
#include "client/exit_codes.h"
#include "client/inputs.h"

namespace unlearning::client {
namespace {

// Adds an optional<double> flag (CLI11 2.1 has no direct std::optional
// support).
CLI::Option* AddOptionalDouble(CLI::App* app, const std::string& name,
                               std::optional<double>* target, const std::string& help) {
  return app->add_option_function<double>(
      name, [target](const double& value) { *target = value; }, help);
}

int Main(int argc, char** argv) {
  CLI::App app{"unlearnctl: client of the machine-unlearning server (unlearnd)", "unlearnctl"};
  app.fallthrough();  // global flags are accepted after the subcommand too
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");

  GlobalOptions global;
  app.add_option("--server", global.server, "unlearnd address host:port")
      ->envname("UNLEARN_SERVER")
      ->capture_default_str();
  app.add_flag("--json", global.json, "Machine-readable output: one JSON document per line");
  app.add_option("--timeout", global.timeout_seconds,
                 "Per-RPC deadline in seconds (default: 30 s for single calls, "
                 "none for "
                 "streams that follow a job)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--token-file", global.token_file,
                 "File holding the bearer token (first line); see docs/security.md")
      ->envname("UNLEARN_TOKEN_FILE");
  app.add_option("--tls-ca", global.tls_ca, "PEM CA of the server's certificate: connect over TLS")
      ->envname("UNLEARN_TLS_CA");
  app.add_option("--tls-cert", global.tls_cert, "PEM client certificate (servers requiring mTLS)")
      ->envname("UNLEARN_TLS_CERT");
  app.add_option("--tls-key", global.tls_key, "PEM private key of --tls-cert")
      ->envname("UNLEARN_TLS_KEY");

  // The chosen command runs after parsing (it needs the parsed global options).
  std::function<int(Connection&)> command;

  // models ...
  CLI::App* models = app.add_subcommand("models", "List, describe, load and roll back models");
  models->require_subcommand(1);
  models->add_subcommand("list", "List loaded models")->callback([&] {
    command = [](Connection& c) { return ModelsList(c); };
  });
  std::string model_id, model_dir;
  int64_t version = 0;
  CLI::App* describe = models->add_subcommand("describe", "Describe a model and its lineage");
  describe->add_option("MODEL", model_id, "Model id")->required();
  describe->callback([&] { command = [&](Connection& c) { return ModelsDescribe(c, model_id); }; });
  CLI::App* load = models->add_subcommand("load", "Load a model directory (on the server host)");
  load->add_option("MODEL_ID", model_id, "Id to give the model")->required();
  load->add_option("DIR", model_dir, "Hugging Face-layout model directory")->required();
  load->callback(
      [&] { command = [&](Connection& c) { return ModelsLoad(c, model_id, model_dir); }; });
  CLI::App* rollback = models->add_subcommand("rollback", "Serve an earlier version again");
  rollback->add_option("MODEL", model_id, "Model id")->required();
  rollback->add_option("--version", version, "Version to serve again")
      ->required()
      ->check(CLI::PositiveNumber);
  bool force_rollback = false;
  rollback->add_flag("--force", force_rollback,
                     "roll back even to a version older than completed erasures (it still holds "
                     "their data); recorded in the certificate chain as undoing them");
  rollback->callback([&] {
    command = [&](Connection& c) { return ModelsRollback(c, model_id, version, force_rollback); };
  });

  // erase
  EraseOptions erase;
  CLI::App* erase_cmd = app.add_subcommand("erase", "Submit an erasure request");
  erase_cmd->add_option("--model", erase.model, "Model id")->required();
  erase_cmd
      ->add_option("--method", erase.method,
                   "Unlearning method (typed: " + absl::StrJoin(MethodNames(), ", ") +
                       "; any other registered name is sent by name with its --param values)")
      ->required();
  erase_cmd->add_option("--forget", erase.forget_path,
                        "Records to forget (JSONL; language models)");
  erase_cmd->add_option("--forget-class", erase.forget_classes,
                        "Class id to forget (image classifiers, diffusion models; repeatable)");
  erase_cmd->add_option("--override-class", erase.override_class,
                        "Diffusion models: the class the forgotten labels should produce, or "
                        "\"random\" (a random retained class per sample)");
  erase_cmd->add_option("--replay-per-class", erase.replay_per_class,
                        "Image classifiers: replay samples per kept class (0: method default)");
  erase_cmd->add_option("--threshold", erase.thresholds,
                        "Verification check FIGURE:COMPARISON:BOUND, e.g. acc_f:ratio_at_most:0.2 "
                        "(repeatable; replaces the model family's default checks)");
  erase_cmd->add_option("--retain", erase.retain_path, "Records to keep (JSONL)");
  erase_cmd->add_option("--templates", erase.templates_path,
                        "Template answers (.txt: one per line; .jsonl)");
  erase_cmd->add_option("--request-id", erase.request_id,
                        "Idempotency key (default: a random UUID, printed)");
  erase_cmd->add_option("--param", erase.params, "Method parameter key=value (repeatable)")
      ->allow_extra_args(false);
  AddOptionalDouble(erase_cmd, "--max-forget-ratio", &erase.max_forget_ratio,
                    "Threshold: forget probability after/before at most this (default 0.5)");
  AddOptionalDouble(erase_cmd, "--min-retain-ratio", &erase.min_retain_ratio,
                    "Threshold: retain probability after/before at least this (default 0.5)");
  AddOptionalDouble(erase_cmd, "--max-mia-auc", &erase.max_mia_auc,
                    "Threshold: membership-inference AUC after at most this (default 1)");
  erase_cmd->add_option("--compliance-ref", erase.compliance_reference,
                        "Opaque compliance reference stored with the job and certificate");
  erase_cmd->add_flag("--wait", erase.wait, "Follow the job to its end and print the result");
  erase_cmd
      ->add_option("--reconnect-timeout", erase.reconnect_timeout_seconds,
                   "With --wait: seconds to keep reconnecting after the stream breaks")
      ->capture_default_str();
  erase_cmd->callback([&] { command = [&](Connection& c) { return RunErase(c, erase); }; });

  // jobs ...
  CLI::App* jobs = app.add_subcommand("jobs", "List, inspect, cancel and watch jobs");
  jobs->require_subcommand(1);
  std::string job_id, state_filter;
  int page_size = 100;
  bool all_pages = false;
  double reconnect_timeout = 600;
  CLI::App* jobs_list = jobs->add_subcommand("list", "List jobs, newest first");
  jobs_list->add_option("--model", model_id, "Only jobs of this model");
  jobs_list->add_option("--state", state_filter,
                        "Only jobs in this state (queued, running, completed, failed, "
                        "failed_verification, cancelled)");
  jobs_list->add_option("--page-size", page_size, "Jobs per page")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  jobs_list->add_flag("--all", all_pages, "Fetch every page");
  jobs_list->callback([&] {
    command = [&](Connection& c) {
      return JobsList(c, model_id, state_filter, page_size, all_pages);
    };
  });
  CLI::App* jobs_get = jobs->add_subcommand("get", "Show one job");
  jobs_get->add_option("JOB", job_id, "Job id")->required();
  jobs_get->callback([&] { command = [&](Connection& c) { return JobsGet(c, job_id); }; });
  CLI::App* jobs_cancel = jobs->add_subcommand("cancel", "Cancel a queued or running job");
  jobs_cancel->add_option("JOB", job_id, "Job id")->required();
  jobs_cancel->callback([&] { command = [&](Connection& c) { return JobsCancel(c, job_id); }; });
  CLI::App* jobs_watch = jobs->add_subcommand("watch", "Follow a job to its end");
  jobs_watch->add_option("JOB", job_id, "Job id")->required();
  jobs_watch
      ->add_option("--reconnect-timeout", reconnect_timeout,
                   "Seconds to keep reconnecting after the stream breaks")
      ->capture_default_str();
  jobs_watch->callback(
      [&] { command = [&](Connection& c) { return RunWatch(c, job_id, reconnect_timeout); }; });

  // certificate get
  CLI::App* certificate = app.add_subcommand("certificate", "Erasure certificates");
  certificate->require_subcommand(1);
  std::string certificate_id;
  CLI::App* certificate_get =
      certificate->add_subcommand("get", "Print the certificate of a completed job");
  certificate_get->add_option("ID", certificate_id, "Job id or request id")->required();
  certificate_get->callback(
      [&] { command = [&](Connection& c) { return CertificateGet(c, certificate_id); }; });
  // certificate export / verify / key (docs/certificates.md)
  std::string export_model;
  std::string export_out;
  CLI::App* certificate_export = certificate->add_subcommand(
      "export", "Write a model's signed certificate chain as a self-contained bundle");
  certificate_export->add_option("--model", export_model, "Model id")->required();
  certificate_export->add_option("--out", export_out, "Bundle file (default: stdout)");
  certificate_export->callback([&] {
    command = [&](Connection& c) { return CertificateExport(c, export_model, export_out); };
  });
  std::string verify_bundle;
  std::string verify_key;
  bool allow_legacy = false;
  CLI::App* certificate_verify = certificate->add_subcommand(
      "verify", "Check a bundle's signatures and chain offline (exit 8 if a record fails)");
  certificate_verify->add_option("BUNDLE", verify_bundle, "Bundle file (certificate export)")
      ->required();
  certificate_verify
      ->add_option("--public-key", verify_key,
                   "The server's public key: PEM or 64 hex digits (signing_key.pub.pem/.hex in "
                   "its data directory, or certificate key)")
      ->required();
  certificate_verify->add_flag("--allow-legacy", allow_legacy,
                               "Accept unsigned records written before signing (their hash and "
                               "chain link are still checked)");
  certificate_verify->callback([&] {
    command = [&](Connection&) {
      return CertificateVerify(verify_bundle, verify_key, allow_legacy, global.json);
    };
  });
  std::string key_pem_out;
  CLI::App* certificate_key =
      certificate->add_subcommand("key", "Print the server's certificate signing key");
  certificate_key->add_option("--out-pem", key_pem_out, "Also write the PEM public key here");
  certificate_key->callback(
      [&] { command = [&](Connection& c) { return CertificateKey(c, key_pem_out); }; });

  // generate / score
  GenerateOptions generate;
  CLI::App* generate_cmd = app.add_subcommand("generate", "Generate text (streamed)");
  generate_cmd->add_option("--model", generate.model, "Model id")->required();
  generate_cmd->add_option("--version", generate.version, "Model version (default: serving)");
  generate_cmd->add_option("--prompt", generate.prompt, "Prompt text")->required();
  generate_cmd->add_flag("--qa", generate.qa_format,
                         "Wrap the prompt in the model's question/answer template");
  generate_cmd->add_option("--max-tokens", generate.max_tokens, "Maximum new tokens (default 64)")
      ->check(CLI::Range(1, 4096));
  generate_cmd->add_option("--temperature", generate.temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 10.0));
  AddOptionalDouble(generate_cmd, "--top-p", &generate.top_p, "Nucleus sampling mass (0, 1]");
  generate_cmd->add_option("--seed", generate.seed, "Sampling seed");
  AddOptionalDouble(generate_cmd, "--uld-alpha", &generate.uld_alpha,
                    "ULD versions: subtraction weight for this query, [the version's, 4]");
  AddOptionalDouble(generate_cmd, "--uld-filter-rate", &generate.uld_filter_rate,
                    "ULD versions: relative-top filter rate for this query, [1e-4, the version's]");
  generate_cmd->callback([&] { command = [&](Connection& c) { return Generate(c, generate); }; });

  ScoreOptions score;
  CLI::App* score_cmd =
      app.add_subcommand("score", "Log-probability of a continuation given a prompt");
  score_cmd->add_option("--model", score.model, "Model id")->required();
  score_cmd->add_option("--version", score.version, "Model version (default: serving)");
  score_cmd->add_option("--prompt", score.prompt, "Prompt text")->required();
  score_cmd->add_option("--continuation", score.continuation, "Continuation to score")->required();
  score_cmd->add_flag("--qa", score.qa_format,
                      "Wrap the prompt in the model's question/answer template");
  AddOptionalDouble(score_cmd, "--uld-alpha", &score.uld_alpha,
                    "ULD versions: subtraction weight for this query, [the version's, 4]");
  AddOptionalDouble(score_cmd, "--uld-filter-rate", &score.uld_filter_rate,
                    "ULD versions: relative-top filter rate for this query, [1e-4, the version's]");
  score_cmd->callback([&] { command = [&](Connection& c) { return Score(c, score); }; });

  ClassifyOptions classify;
  CLI::App* classify_cmd = app.add_subcommand(
      "classify", "Top-k classes of PNG files or IDX images on an image classifier");
  classify_cmd->add_option("--model", classify.model, "Model id")->required();
  classify_cmd->add_option("--version", classify.version, "Model version (default: serving)");
  classify_cmd->add_option("--top-k", classify.top_k, "Classes per image (default: 5)");
  classify_cmd->add_option("--idx", classify.idx,
                           "IDX image file, e.g. /usr/share/datasets/fashion-mnist/"
                           "t10k-images-idx3-ubyte.gz");
  classify_cmd->add_option("--first", classify.idx_first, "First IDX image")->capture_default_str();
  classify_cmd->add_option("--count", classify.idx_count, "IDX images to classify")
      ->capture_default_str();
  classify_cmd->add_option("pngs", classify.pngs, "PNG files");
  SampleOptions sample;
  CLI::App* sample_cmd =
      app.add_subcommand("sample", "Images of a class-conditional generator, as PNG files");
  sample_cmd->add_option("--model", sample.model, "Model id")->required();
  sample_cmd->add_option("--version", sample.version, "Model version (default: serving)");
  sample_cmd->add_option("--label", sample.labels, "Class label per image (repeatable)")
      ->required();
  sample_cmd->add_option("--steps", sample.steps, "Denoising steps (default: 50)");
  sample_cmd->add_option("--sampler", sample.sampler, "ddim (default) or ancestral");
  sample_cmd->add_option("--guidance", sample.guidance_scale, "Guidance scale (default: 3)");
  sample_cmd->add_option("--seed", sample.seed, "Seed")->capture_default_str();
  sample_cmd->add_option("--out", sample.out, "Directory for the PNG files and contact_sheet.png")
      ->required();
  sample_cmd->callback([&] { command = [&](Connection& c) { return Sample(c, sample); }; });

  classify_cmd->callback([&] { command = [&](Connection& c) { return Classify(c, classify); }; });

  // token new / hash (offline: the server's token-file lines)
  CLI::App* token = app.add_subcommand("token", "Make bearer tokens and their token-file lines");
  token->require_subcommand(1);
  std::string token_out, token_in;
  TokenSpec token_spec;
  for (CLI::App* sub :
       {token->add_subcommand("new", "Draw a random token into --out (0600) and print its line"),
        token->add_subcommand("hash", "Print the token-file line of an existing token")}) {
    sub->add_option("--name", token_spec.name, "Identity (audit log, job owner)")->required();
    sub->add_option("--role", token_spec.roles, "query, erase, admin or metrics (repeatable)")
        ->required();
    sub->add_option("--model", token_spec.models,
                    "Restrict to this model (repeatable; default all)");
    sub->add_option("--expires", token_spec.expires,
                    "Refused from this RFC 3339 time on (e.g. 2027-06-30T00:00:00Z)");
    sub->add_option("--valid-for", token_spec.valid_for,
                    "Or expire this long from now: 30d, 12h, 90m");
  }
  CLI::App* token_new = token->get_subcommand("new");
  CLI::App* token_hash = token->get_subcommand("hash");
  token_new->add_option("--out", token_out, "File to write the token to")->required();
  token_hash->add_option("TOKEN_FILE", token_in, "File holding the token (first line)")->required();
  std::function<int()> offline;
  token_new->callback([&] { offline = [&] { return TokenNew(token_spec, token_out); }; });
  token_hash->callback([&] { offline = [&] { return TokenHash(token_spec, token_in); }; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --help-all are "errors" with exit code 0.
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (offline) return offline();
  if (!command) return Fail(kExitUsage, "no command given (see --help)");
  if (absl::Status loaded = LoadCredentials(global); !loaded.ok()) {
    return Fail(kExitUsage, std::string(loaded.message()));
  }
  Connection connection(global);
  return command(connection);
}

}  // namespace
}  // namespace unlearning::client

int main(int argc, char** argv) { return unlearning::client::Main(argc, argv); }
