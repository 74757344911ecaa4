// How many threads LibTorch runs, decided once per process from the BLAS that is actually loaded.
//
// LibTorch threads its own kernels with OpenMP; every matmul goes to OpenBLAS. Debian ships two
// multi-threaded OpenBLAS builds: the OpenMP one shares LibTorch's pool (n LibTorch threads = n
// threads in a matmul too), the pthreads one runs a pool of its own beside it, so n LibTorch
// threads put n + cores busy threads on the cores. Measured on the FLAT step of the demo LM
// (bench/run_bench.sh, 2 cores): OpenMP OpenBLAS 1 thread 377 ms, 2 threads 227 ms; pthreads
// OpenBLAS 1 thread 334 ms, 2 threads 982 ms. The build links the OpenMP one when it is installed
// (cmake/UnlearningHelpers.cmake); ConfigureThreads makes the pthreads case safe as well.
#pragma once

#include <string>

namespace unlearning::core {

enum class BlasThreading { kUnknown, kSequential, kPthreads, kOpenMp };

struct ThreadConfig {
  int threads = 1;                               // LibTorch intra-op threads now in effect
  BlasThreading blas = BlasThreading::kUnknown;  // threading of the loaded OpenBLAS
  std::string blas_config;                       // openblas_get_config(), or "" if not OpenBLAS
  bool capped = false;  // `requested` was lowered to avoid oversubscription (see `reason`)
  std::string reason;

  // "2 LibTorch threads; BLAS OpenBLAS 0.3.21 ... (OpenMP, shares LibTorch's pool)".
  std::string Describe() const;
};

// The threading of the OpenBLAS loaded in this process (kUnknown if another BLAS is loaded).
BlasThreading LoadedBlasThreading();

// Sets LibTorch's intra-op threads (and OpenBLAS's) for this process and returns what it chose.
//   requested <= 0: automatic, one per core with the OpenMP (or a sequential) OpenBLAS; 1 with the
//                   pthreads OpenBLAS, whose own pool already uses every core for matmuls.
//   requested >= 1: that many LibTorch threads; with the pthreads OpenBLAS its pool is limited to
//                   1 thread when requested > 1, so the two pools never add up past `requested`.
// Call it before any LibTorch work, from the main thread.
ThreadConfig ConfigureThreads(int requested);

const char* BlasThreadingName(BlasThreading blas);

// Intra-op threads of erasure jobs (core::RunErasure), so that a server can keep a core for
// inference while a job trains. 0 (the default) = the process setting of ConfigureThreads. Set it
// once at startup, before jobs run.
void SetJobThreads(int threads);
int JobThreads();

// Limits the calling thread's LibTorch (and OpenMP OpenBLAS) parallelism to `threads` for its
// lifetime; other threads keep theirs. threads <= 0: no change. Not movable.
class ScopedThreadLimit {
 public:
  explicit ScopedThreadLimit(int threads);
  ~ScopedThreadLimit();
  ScopedThreadLimit(const ScopedThreadLimit&) = delete;
  ScopedThreadLimit& operator=(const ScopedThreadLimit&) = delete;

 private:
  int previous_ = 0;  // 0 = nothing to restore
};

}  // namespace unlearning::core
