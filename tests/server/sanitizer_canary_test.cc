// The sanitized build is live: in server_tests_asan (ctest label sanitizer) a use after free, a
// stack use after return, a signed overflow and a leak each end the process with the sanitizer's
// report, so a clean run of the other tests in that binary means the sanitizers looked and found
// nothing. In the plain server_tests these are skipped. docs/sanitizers.md.
#include <climits>
#include <cstdio>
#include <cstring>

#include <gtest/gtest.h>

#include "tests/testing/sanitizers.h"

namespace {

#ifdef UNL_ASAN
// Volatile, so the compiler can neither see the overflow nor drop the access.
volatile int g_index = 8;
volatile int g_big = INT_MAX;
char* volatile g_sink = nullptr;

TEST(SanitizerCanaryDeathTest, AUseAfterFreeIsReported) {
  EXPECT_DEATH(
      {
        char* block = new char[16];
        std::memset(block, 0, 16);
        g_sink = block;
        delete[] block;
        std::printf("%d\n", g_sink[g_index]);
      },
      "heap-use-after-free");
}

__attribute__((noinline)) char* AddressOfALocal() {
  char local[32];
  std::memset(local, 0, sizeof local);
  g_sink = local;
  return g_sink;
}

// Seen only with detect_stack_use_after_return=1, one of the options built into the binary
// (tests/sanitizers/default_options.cc): this fails if they stop being applied.
TEST(SanitizerCanaryDeathTest, AStackUseAfterReturnIsReported) {
  EXPECT_DEATH(
      {
        char* dangling = AddressOfALocal();
        std::printf("%d\n", dangling[g_index]);
      },
      "stack-use-after-return");
}

TEST(SanitizerCanaryDeathTest, ASignedOverflowIsReported) {
  EXPECT_DEATH(
      {
        const int sum = g_big + 1;
        std::printf("%d\n", sum);
      },
      "signed integer overflow");
}

// Loses the only pointers to 64 blocks. Many, and in a frame of its own: LeakSanitizer scans
// stacks and registers conservatively, so a stale copy of one pointer can keep that block
// reachable.
__attribute__((noinline)) void LeakBlocks() {
  for (int i = 0; i < 64; ++i) {
    g_sink = new char[4096];
    std::memset(g_sink, i, 4096);
  }
  g_sink = nullptr;
}

TEST(SanitizerCanaryDeathTest, ALeakIsReported) {
  EXPECT_DEATH(
      {
        LeakBlocks();
        __lsan_do_leak_check();
      },
      "detected memory leaks");
}
#else
TEST(SanitizerCanaryDeathTest, SkippedWithoutSanitizers) {
  GTEST_SKIP() << "a plain build: server_tests_asan runs the canaries";
}
#endif

}  // namespace
