// The options every sanitized test binary (*_asan) runs with, built in so that running one by
// hand behaves as under ctest; ASAN_OPTIONS, LSAN_OPTIONS and UBSAN_OPTIONS in the environment
// still override them. docs/sanitizers.md.
//   detect_odr_violation=0: protobuf's and gRPC's globals are defined both in their shared
//     libraries and in code generated into ours; that is how they are shipped, not our bug.
//   detect_stack_use_after_return=1, strict_string_checks=1, check_initialization_order=1: the
//     checks AddressSanitizer leaves off by default.
//   halt_on_error=1 (UBSan): any report ends the test (the code is also built with
//     -fno-sanitize-recover=undefined).

#ifndef UNL_SOURCE_DIR
#error "UNL_SOURCE_DIR must be defined (tests/CMakeLists.txt)"
#endif

extern "C" {

__attribute__((visibility("default"), used)) const char* __asan_default_options() {
  return "detect_odr_violation=0:detect_stack_use_after_return=1:strict_string_checks=1:"
         "check_initialization_order=1";
}

__attribute__((visibility("default"), used)) const char* __lsan_default_options() {
  return "suppressions=" UNL_SOURCE_DIR "/tests/sanitizers/lsan.supp:print_suppressions=0";
}

__attribute__((visibility("default"), used)) const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}

}  // extern "C"
