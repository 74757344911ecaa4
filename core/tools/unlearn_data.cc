// unlearn-data: offline generation of probe / training data.
//
//   unlearn-data tofu --out DIR [--entities 50] [--questions 8] [--forget-fraction 0.1]
//                     [--holdout-fraction 0.1] [--seed 0] [--vocabulary 0]
//
// writes DIR/train.jsonl (forget + retain: what the demo model is fine-tuned on),
// DIR/forget.jsonl, DIR/retain.jsonl and DIR/holdout.jsonl (never trained on).
// --vocabulary picks the entity vocabulary (0: the original pools; 1: disjoint pools, so the
// entities are entirely different people with different attribute values).
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <CLI/CLI.hpp>

#include "core/common/status_macros.h"
#include "core/data/text_example.h"
#include "core/data/tofu_generator.h"

namespace unlearning::core {
namespace {

absl::Status RunTofu(const TofuOptions& options, const std::string& out_dir) {
  UNL_ASSIGN_OR_RETURN(TofuDataset data, GenerateTofu(options));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create directory ", out_dir, ": ", ec.message()));
  }
  std::vector<TextExample> train = data.forget;
  train.insert(train.end(), data.retain.begin(), data.retain.end());
  const struct {
    const char* name;
    const std::vector<TextExample>* examples;
  } files[] = {{"train.jsonl", &train},
               {"forget.jsonl", &data.forget},
               {"retain.jsonl", &data.retain},
               {"holdout.jsonl", &data.holdout}};
  for (const auto& f : files) {
    const std::string path = (std::filesystem::path(out_dir) / f.name).string();
    UNL_RETURN_IF_ERROR(WriteJsonl(path, *f.examples));
  }
  size_t answer_bytes = 0;
  for (const TextExample& e : data.all) answer_bytes += e.answer.size();
  std::printf(
      "tofu: seed %llu, vocabulary %d, %d entities x %d questions -> %s\n"
      "  train   %zu examples (forget + retain)\n"
      "  forget  %zu examples, %zu entities\n"
      "  retain  %zu examples, %zu entities\n"
      "  holdout %zu examples, %zu entities (never trained on)\n"
      "  mean answer length %.1f bytes\n",
      static_cast<unsigned long long>(options.seed), options.vocabulary, options.entities,
      options.questions_per_entity, out_dir.c_str(), train.size(), data.forget.size(),
      data.forget_entities.size(), data.retain.size(), data.retain_entities.size(),
      data.holdout.size(), data.holdout_entities.size(),
      data.all.empty() ? 0.0
                       : static_cast<double>(answer_bytes) / static_cast<double>(data.all.size()));
  return absl::OkStatus();
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) {
  CLI::App app{"unlearn-data: generate data sets for the unlearning service"};
  app.require_subcommand(1);

  unlearning::core::TofuOptions tofu;
  std::string out_dir;
  CLI::App* tofu_cmd =
      app.add_subcommand("tofu", "fictitious-entity QA in the TOFU style, split by entity");
  tofu_cmd->add_option("--out", out_dir, "output directory (created if missing)")->required();
  tofu_cmd->add_option("--entities", tofu.entities, "number of fictitious entities")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  tofu_cmd
      ->add_option(
          "--questions", tofu.questions_per_entity,
          absl::StrCat("questions per entity (1..", unlearning::core::kTofuTemplateCount, ")"))
      ->capture_default_str()
      ->check(CLI::Range(1, unlearning::core::kTofuTemplateCount));
  tofu_cmd->add_option("--forget-fraction", tofu.forget_fraction, "fraction of entities to forget")
      ->capture_default_str();
  tofu_cmd
      ->add_option("--holdout-fraction", tofu.holdout_fraction,
                   "fraction of entities held out (never trained on)")
      ->capture_default_str();
  tofu_cmd->add_option("--seed", tofu.seed, "generator seed")->capture_default_str();
  tofu_cmd
      ->add_option(
          "--vocabulary", tofu.vocabulary,
          absl::StrCat("entity vocabulary (0..", unlearning::core::kTofuVocabularyCount - 1,
                       "): disjoint pools of names and attribute values"))
      ->capture_default_str()
      ->check(CLI::Range(0, unlearning::core::kTofuVocabularyCount - 1));

  CLI11_PARSE(app, argc, argv);

  if (tofu_cmd->parsed()) {
    absl::Status status = unlearning::core::RunTofu(tofu, out_dir);
    if (!status.ok()) {
      std::fprintf(stderr, "unlearn-data tofu: %s\n", std::string(status.message()).c_str());
      return 1;
    }
  }
  return 0;
}
