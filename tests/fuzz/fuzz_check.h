// Assertions for the libFuzzer targets: a failed check prints what failed and aborts, which
// libFuzzer reports as a crash and saves the input as a reproducer.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"

namespace unlearning::fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const char* what,
                              const std::string& detail) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s %s\n", file, line, what, detail.c_str());
  std::abort();
}

// Seed corpus support: when the environment names a directory in UNL_FUZZ_WRITE_SEEDS, a target's
// LLVMFuzzerInitialize calls `write(dir)` to write its valid examples (made by the project's own
// writers) there and exits without fuzzing. tests/fuzz/corpus/<target>/ holds what they wrote.
template <typename Fn>
void MaybeWriteSeeds(Fn&& write) {
  const char* dir = std::getenv("UNL_FUZZ_WRITE_SEEDS");
  if (dir == nullptr || *dir == '\0') return;
  write(std::string(dir));
  std::exit(0);
}

// Writes `bytes` to <dir>/<name> (aborts if it cannot).
inline void WriteSeed(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) Fail(__FILE__, __LINE__, "cannot write seed", dir + "/" + name);
}

}  // namespace unlearning::fuzz

// Aborts unless `cond` holds.
#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) ::unlearning::fuzz::Fail(__FILE__, __LINE__, #cond, ""); \
  } while (0)

// Aborts unless `status` is OK or kInvalidArgument (how every parser must refuse bad input).
#define FUZZ_CHECK_OK_OR_INVALID(status)                                                 \
  do {                                                                                   \
    const absl::Status& fuzz_status_ = (status);                                         \
    if (!fuzz_status_.ok() && fuzz_status_.code() != absl::StatusCode::kInvalidArgument) \
      ::unlearning::fuzz::Fail(__FILE__, __LINE__, "OK or kInvalidArgument, got",        \
                               fuzz_status_.ToString());                                 \
  } while (0)
