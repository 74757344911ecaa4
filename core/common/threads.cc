#include "core/common/threads.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <ATen/Parallel.h>

// libgomp (LibTorch's OpenMP runtime, linked by every LibTorch user): the calling thread's
// nthreads ICV, which `#pragma omp parallel` in ATen and the OpenMP OpenBLAS both follow.
extern "C" void omp_set_num_threads(int threads);

namespace unlearning::core {
namespace {

std::atomic<int> job_threads{0};

// OpenBLAS's own entry points, looked up in the already-loaded library (LibTorch loads it through
// libblas.so.3); none of them exists when another BLAS is in use.
void* OpenBlasSymbol(const char* name) {
  static void* const handle = dlopen("libopenblas.so.0", RTLD_LAZY | RTLD_NOLOAD);
  if (handle != nullptr) {
    if (void* symbol = dlsym(handle, name)) return symbol;
  }
  return dlsym(RTLD_DEFAULT, name);
}

int Cores() { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

void SetOpenBlasThreads(int threads) {
  using SetFn = void (*)(int);
  if (auto set = reinterpret_cast<SetFn>(OpenBlasSymbol("openblas_set_num_threads"))) {
    set(threads);
  }
}

}  // namespace

const char* BlasThreadingName(BlasThreading blas) {
  switch (blas) {
    case BlasThreading::kSequential:
      return "sequential";
    case BlasThreading::kPthreads:
      return "pthreads";
    case BlasThreading::kOpenMp:
      return "OpenMP";
    case BlasThreading::kUnknown:
      break;
  }
  return "unknown";
}

BlasThreading LoadedBlasThreading() {
  using GetFn = int (*)();
  auto get = reinterpret_cast<GetFn>(OpenBlasSymbol("openblas_get_parallel"));
  if (get == nullptr) return BlasThreading::kUnknown;
  switch (get()) {
    case 0:
      return BlasThreading::kSequential;
    case 1:
      return BlasThreading::kPthreads;
    case 2:
      return BlasThreading::kOpenMp;
    default:
      return BlasThreading::kUnknown;
  }
}

ThreadConfig ConfigureThreads(int requested) {
  ThreadConfig config;
  config.blas = LoadedBlasThreading();
  using ConfigFn = char* (*)();
  if (auto get = reinterpret_cast<ConfigFn>(OpenBlasSymbol("openblas_get_config"))) {
    config.blas_config = get();
  }
  const bool separate_pool = config.blas == BlasThreading::kPthreads;
  if (requested <= 0) {
    config.threads = separate_pool ? 1 : Cores();
    if (separate_pool && Cores() > 1) {
      config.capped = true;
      config.reason =
          "the pthreads OpenBLAS threads matmuls on every core itself; more LibTorch threads "
          "would oversubscribe them (install libopenblas0-openmp and rebuild)";
    }
  } else {
    config.threads = requested;
    if (separate_pool && requested > 1) {
      SetOpenBlasThreads(1);
      config.capped = true;
      config.reason = "the pthreads OpenBLAS pool is limited to 1 thread beside LibTorch's";
    }
  }
  at::set_num_threads(config.threads);
  config.threads = at::get_num_threads();
  return config;
}

void SetJobThreads(int threads) { job_threads.store(std::max(0, threads)); }

int JobThreads() { return job_threads.load(); }

ScopedThreadLimit::ScopedThreadLimit(int threads) {
  if (threads <= 0) return;
  // Also runs ATen's once-per-thread initialisation, which would otherwise reset the count at the
  // thread's first parallel kernel.
  previous_ = at::get_num_threads();
  omp_set_num_threads(threads);
}

ScopedThreadLimit::~ScopedThreadLimit() {
  if (previous_ > 0) omp_set_num_threads(previous_);
}

std::string ThreadConfig::Describe() const {
  std::string text =
      std::to_string(threads) + (threads == 1 ? " LibTorch thread" : " LibTorch threads");
  text += "; BLAS ";
  text += blas_config.empty() ? std::string("(not OpenBLAS)") : blas_config;
  text += " (";
  text += BlasThreadingName(blas);
  if (blas == BlasThreading::kOpenMp) text += ", shares LibTorch's pool";
  text += ")";
  if (capped) text += "; " + reason;
  return text;
}

}  // namespace unlearning::core
