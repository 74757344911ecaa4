// Whether this test binary is built with AddressSanitizer (the *_asan targets, docs/sanitizers.md):
// defines UNL_ASAN then, and declares the parts of the sanitizers' public interface the tests use
// (<sanitizer/*.h>: clang ships those headers, GCC only the runtimes).
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define UNL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNL_ASAN 1
#endif
#endif

#ifdef UNL_ASAN
extern "C" {
// Bytes the sanitizer's allocator has handed out and not got back.
size_t __sanitizer_get_current_allocated_bytes();
// Runs LeakSanitizer now; a leak ends the process with its report.
void __lsan_do_leak_check();
}
#endif
