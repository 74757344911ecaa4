// core::ConfigureThreads: the process really runs the BLAS the build chose, and the thread count it
// reports is the one LibTorch uses.
#include "core/common/threads.h"

#include <cmath>
#include <thread>

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/types.h>

namespace unlearning::core {
namespace {

#ifdef UNL_OPENMP_BLAS
// The build linked the OpenMP OpenBLAS (cmake/UnlearningHelpers.cmake): it must be the one loaded,
// whatever the system's libblas.so.3 alternative points to.
TEST(ThreadsTest, TheOpenMpOpenBlasIsTheOneLoaded) {
  EXPECT_EQ(LoadedBlasThreading(), BlasThreading::kOpenMp);
}

TEST(ThreadsTest, AutomaticUsesEveryCoreWithTheSharedPool) {
  const ThreadConfig config = ConfigureThreads(0);
  EXPECT_EQ(config.blas, BlasThreading::kOpenMp);
  EXPECT_EQ(config.threads, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_EQ(at::get_num_threads(), config.threads);
  EXPECT_FALSE(config.capped);
  EXPECT_NE(config.Describe().find("OpenMP"), std::string::npos) << config.Describe();
  EXPECT_NE(config.blas_config.find("OpenBLAS"), std::string::npos) << config.blas_config;
}
#endif

TEST(ThreadsTest, AnExplicitCountIsWhatLibTorchRuns) {
  for (int n : {1, 2}) {
    const ThreadConfig config = ConfigureThreads(n);
    EXPECT_EQ(config.threads, n);
    EXPECT_EQ(at::get_num_threads(), n);
  }
}

// A job thread limited to 1 thread runs 1, while the rest of the process keeps its count, and gets
// its count back when the limit ends.
TEST(ThreadsTest, ScopedLimitIsPerThreadAndRestored) {
  ConfigureThreads(2);
  int inside = 0, after = 0, other_thread = 0;
  std::thread job([&] {
    {
      const ScopedThreadLimit limit(1);
      inside = at::get_num_threads();
      std::thread([&] { other_thread = at::get_num_threads(); }).join();
    }
    after = at::get_num_threads();
  });
  job.join();
  EXPECT_EQ(inside, 1);
  EXPECT_EQ(other_thread, 2);
  EXPECT_EQ(after, 2);
  EXPECT_EQ(at::get_num_threads(), 2);
}

// Thread counts change the schedule, not the result: the same matmul under 1 and 2 threads, each
// within float32's summation error bound of the float64 product (|error| <= K u (|A| |B|), u =
// 2^-24 per operation, K = 300 terms). The two results need not be bitwise equal: on this machine
// (AMD EPYC, OpenBLAS) they differ by up to 5e-5 on entries up to 75 (measured), since the blocking
// and the order of summation depend on the thread count.
TEST(ThreadsTest, MatmulAgreesAcrossThreadCounts) {
  torch::manual_seed(0);
  const torch::Tensor a = torch::randn({257, 300});
  const torch::Tensor b = torch::randn({300, 129});
  ConfigureThreads(1);
  const torch::Tensor one = a.matmul(b);
  ConfigureThreads(2);
  const torch::Tensor two = a.matmul(b);
  const torch::Tensor exact = a.to(torch::kDouble).matmul(b.to(torch::kDouble));
  const torch::Tensor bound =
      300 * std::ldexp(1.0, -24) * a.abs().to(torch::kDouble).matmul(b.abs().to(torch::kDouble));
  EXPECT_TRUE((one.to(torch::kDouble) - exact).abs().le(bound).all().item<bool>());
  EXPECT_TRUE((two.to(torch::kDouble) - exact).abs().le(bound).all().item<bool>());
  // Far from the bound's scale: a wrong result (e.g. a thread's block missing) would not pass.
  EXPECT_GT(exact.abs().max().item<double>(), 1000 * bound.max().item<double>());
}

}  // namespace
}  // namespace unlearning::core
