// Behaviour of GS-LoRA and GS-LoRA++ on the project's Fashion-MNIST ViT (tools/build_vit.sh, ctest
// fixture vit_model; UNL_VIT_DIR): a continual sequence of four requests of two classes each,
// with default parameters, through the erasure pipeline and the family's verifier. Each request's
// adapters are written as files and the next request runs on the composite reloaded from them
// (LoadVitAdapter on the reloaded parent), as the server's version chain does.
//
// Bars, stated before measuring (issue #10), on the model's test probes (300 per class):
//   after every task t: Acc_f (classes of task t) <= 0.05;
//                       Acc_r (classes never forgotten) >= the original model's accuracy on the
//                       same classes - 0.03 (at most 3 points lower; higher is allowed);
//                       Acc_o (classes of tasks < t) <= 0.05.
// The first task alone is the "one task of two classes" behaviour test. The baselines
// (class_forgetting, retain_finetune, l2_finetune) run the same tasks in a disabled suite and are
// only reported.
//
// Not named *_test.cc on purpose: tests/CMakeLists.txt globs those into behaviour_tests, which
// requires only the demo model; tests/e2e/CMakeLists.txt builds this one into
// gs_lora_behaviour_tests, which requires the vit_model fixture.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/app/erasure_pipeline.h"
#include "core/models/vit.h"
#include "core/models/vit_adapter.h"
#include "core/verify/vision_verification.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

std::string ModelDir() {
  const char* env = std::getenv("UNL_VIT_DIR");
  const std::string root =
      env != nullptr && *env != '\0' ? env : std::string(UNL_SOURCE_DIR) + "/.cache/vit";
  return root + "/model";
}

// Method parameters: defaults, or the JSON object in UNL_GS_LORA_PARAMS (for sweeps by hand; CI
// sets none).
nlohmann::json Params() {
  const char* env = std::getenv("UNL_GS_LORA_PARAMS");
  if (env == nullptr || *env == '\0') return nlohmann::json::object();
  return nlohmann::json::parse(env);
}

const std::vector<std::vector<int64_t>> kTasks = {{0, 1}, {2, 3}, {4, 5}, {6, 7}};

// The per-task row every method prints (the table of docs/methods/gs_lora.md).
struct TaskRow {
  double acc_f = 0, acc_r = 0, acc_r_orig = 0, acc_o = 0;
};

class SequenceFixture {
 protected:
  void Load() {
    at::set_num_threads(1);
    const FamilyRegistry& families = FamilyRegistry::Builtin();
    absl::StatusOr<std::unique_ptr<Model>> model = families.Load(ModelDir(), torch::kCPU);
    ASSERT_TRUE(model.ok()) << model.status() << " (run tools/build_vit.sh)";
    original_.reset(dynamic_cast<VitClassifier*>(model->release()));
    ASSERT_NE(original_, nullptr);
    UNL_ASSERT_OK_AND_ASSIGN(spec_, families.Find(ModelFamily::kImageClassifier));
    UNL_ASSERT_OK_AND_ASSIGN(probes_, spec_->load_probes(ModelDir()));
    ASSERT_GT(probes_.images_test.images.size(0), 0);
  }

  // Runs the four tasks with `method` and `params`, storing each request's artifact as a version
  // would (adapters beside the parent, or full weights) and running the next task on the model
  // reloaded from it. Prints one row per task; `rows` gets the figures.
  void RunSequence(const std::string& method, const nlohmann::json& params,
                   std::vector<TaskRow>* rows) {
    const std::string root = ::testing::TempDir() + "/gs_lora_behaviour_" + method;
    std::filesystem::remove_all(root);
    std::shared_ptr<const VitClassifier> current(original_->CloneVit(torch::kCPU));
    std::vector<int64_t> forgotten;
    std::printf("%s: params %s\n", method.c_str(), params.dump().c_str());
    std::printf(
        "%s: task  acc_f  acc_r (orig)  acc_o  h_mean  mia  knn(before->after)  zero_groups  "
        "artifact_bytes  train_s  job_s\n",
        method.c_str());
    for (size_t t = 0; t < kTasks.size(); ++t) {
      ErasureData data;
      data.family = ModelFamily::kImageClassifier;
      data.classes.forget_classes = kTasks[t];
      UNL_ASSERT_OK_AND_ASSIGN(
          ErasurePlan plan,
          PlanErasure(MethodRegistry::Builtin(), FamilyRegistry::Builtin(),
                      ModelFamily::kImageClassifier, method, params, data, {}, current.get()));
      NullProgressSink progress;
      CancellationToken cancel;
      const auto start = std::chrono::steady_clock::now();
      UNL_ASSERT_OK_AND_ASSIGN(ErasureOutcome outcome, RunErasure(plan, *current, probes_, data,
                                                                  torch::kCPU, &progress, &cancel));
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ASSERT_FALSE(outcome.already_absent);

      // Store the artifact as a version would and reload it (on the parent for adapters).
      const std::string dir = root + "/v" + std::to_string(t + 2);
      std::filesystem::create_directories(dir);
      UNL_ASSERT_OK(outcome.candidate.write(dir));
      int64_t artifact_bytes = 0;
      for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.is_regular_file()) artifact_bytes += static_cast<int64_t>(entry.file_size());
      }
      std::shared_ptr<const VitClassifier> next;
      if (outcome.candidate.kind == ArtifactKind::kLoraAdapter) {
        UNL_ASSERT_OK_AND_ASSIGN(
            std::unique_ptr<Model> loaded,
            spec_->load_on_parent(ArtifactKind::kLoraAdapter, dir, current, torch::kCPU));
        next.reset(dynamic_cast<VitClassifier*>(loaded.release()));
      } else {
        ASSERT_EQ(outcome.candidate.kind, ArtifactKind::kFullWeights);
        UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> loaded,
                                 VitClassifier::Load(dir, torch::kCPU));
        next = std::move(loaded);
      }
      ASSERT_NE(next, nullptr);

      // Figures on the reloaded model, against the original model on the same classes.
      UNL_ASSERT_OK_AND_ASSIGN(auto after, ComputeVisionFigures(*next, probes_.images_test, {},
                                                                kTasks[t], forgotten, nullptr));
      // The original's accuracy on the retained classes: "forget" everything else to isolate
      // them.
      std::vector<int64_t> not_retained = forgotten;
      not_retained.insert(not_retained.end(), kTasks[t].begin(), kTasks[t].end());
      UNL_ASSERT_OK_AND_ASSIGN(auto orig, ComputeVisionFigures(*original_, probes_.images_test, {},
                                                               not_retained, {}, nullptr));
      TaskRow row;
      row.acc_f = after.at("acc_f");
      row.acc_r = after.at("acc_r");
      row.acc_r_orig = orig.at("acc_r");
      row.acc_o = forgotten.empty() ? 0.0 : after.at("acc_o");
      rows->push_back(row);
      const FigureValue* h = outcome.report.Find("h_mean");
      const FigureValue* mia = outcome.report.Find("mia.loss_auc");
      const FigureValue* knn = outcome.report.Find("knn.forget");
      const nlohmann::json& facts = outcome.candidate.facts;
      const std::string zero = facts.contains("zero_groups")
                                   ? std::to_string(facts["zero_groups"].get<int64_t>()) + "/" +
                                         std::to_string(facts["groups"].get<int64_t>())
                                   : std::string("-");
      std::printf(
          "%s: %zu  %.4f  %.4f (%.4f)  %.4f  %.4f  %.3f  %.3f->%.3f  %s  %lld  %.1f  %.1f\n",
          method.c_str(), t + 1, row.acc_f, row.acc_r, row.acc_r_orig, row.acc_o,
          h != nullptr ? h->after : -1.0, mia != nullptr ? mia->after : -1.0,
          knn != nullptr ? knn->before : -1.0, knn != nullptr ? knn->after : -1.0, zero.c_str(),
          static_cast<long long>(artifact_bytes), facts.value("train_seconds", -1.0), seconds);
      std::printf("%s: facts %s\n", method.c_str(), facts.dump().c_str());
      std::fflush(stdout);
      // The pipeline's verifier saw the same model (in memory, before the round trip).
      EXPECT_NEAR(outcome.report.Find("acc_f")->after, row.acc_f, 1e-6);

      forgotten.insert(forgotten.end(), kTasks[t].begin(), kTasks[t].end());
      EXPECT_EQ(next->forgotten_classes().size(), forgotten.size());
      current = next;
    }
  }

  std::unique_ptr<VitClassifier> original_;
  const FamilySpec* spec_ = nullptr;
  ModelProbes probes_;
};

class GsLoraBehaviour : public SequenceFixture, public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { Load(); }
};

TEST_P(GsLoraBehaviour, ContinualSequenceOfFourTasks) {
  const std::string method = GetParam();
  std::vector<TaskRow> rows;
  RunSequence(method, Params(), &rows);
  if (HasFatalFailure()) return;
  ASSERT_EQ(rows.size(), kTasks.size());
  for (size_t t = 0; t < rows.size(); ++t) {
    EXPECT_LE(rows[t].acc_f, 0.05) << "task " << t + 1;
    EXPECT_GE(rows[t].acc_r, rows[t].acc_r_orig - 0.03) << "task " << t + 1;
    if (t > 0) {
      EXPECT_LE(rows[t].acc_o, 0.05) << "task " << t + 1;
    }
  }
}

// GS-LoRA itself runs the same sequence through the real service (tests/e2e/gs_lora_serving.sh),
// so CI runs only GS-LoRA++ here (about 100 s); the in-process GS-LoRA run, for comparing the two
// on identical tasks, is disabled in CI: --gtest_also_run_disabled_tests runs it.
INSTANTIATE_TEST_SUITE_P(Plus, GsLoraBehaviour, ::testing::Values("gs_lora_plus"));
INSTANTIATE_TEST_SUITE_P(DISABLED_Plain, GsLoraBehaviour, ::testing::Values("gs_lora"));

// The baselines on the same four tasks, with the same replay data (replay_per_class 100 and the
// same seed, so class_replay.h draws the same samples GS-LoRA replays) and the same budget (150
// steps of 64 replay images, plus 64 forget images where the method uses them). Reported in
// docs/methods/gs_lora.md, not required to pass any bar (issue #10): the figures are printed and
// only the harness's own consistency is checked. Disabled in CI (about 4 x 4 full fine-tunings):
//   gs_lora_behaviour_tests --gtest_also_run_disabled_tests --gtest_filter='*Baselines*'
// UNL_BASELINE_PARAMS (a JSON object) is merged over the shared budget, for sweeps by hand.
class GsLoraBaselines : public SequenceFixture, public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { Load(); }
};

TEST_P(GsLoraBaselines, SameFourTasksSameReplayAndBudget) {
  nlohmann::json params = {{"steps", 150}, {"batch_size", 64}, {"replay_per_class", 100}};
  const char* env = std::getenv("UNL_BASELINE_PARAMS");
  if (env != nullptr && *env != '\0') params.update(nlohmann::json::parse(env));
  std::vector<TaskRow> rows;
  RunSequence(GetParam(), params, &rows);
  EXPECT_EQ(rows.size(), kTasks.size());
}

INSTANTIATE_TEST_SUITE_P(DISABLED_Baselines, GsLoraBaselines,
                         ::testing::Values("class_forgetting", "retain_finetune", "l2_finetune"));

}  // namespace
}  // namespace unlearning::core
