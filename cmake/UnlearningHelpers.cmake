# Shared build helpers: warnings, the LibTorch precompiled header, layering checks.

set(UNL_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wnon-virtual-dtor -Wshadow=local)

# Applies the project's warnings (and -Werror under UNL_WERROR) to one of our targets.
function(unl_warnings target)
  target_compile_options(${target} PRIVATE ${UNL_WARNINGS})
  if(UNL_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# Gives a LibTorch-using target the shared precompiled header built by unl_torch_pch.
# All users must share compile flags, so the PCH is reused rather than rebuilt per target.
# SANITIZER <kind>: the target is a sanitized variant; it compiles with that kind's flags and
# reuses the PCH built with them (unl_torch_pch_<kind>).
function(unl_use_torch_pch target)
  cmake_parse_arguments(ARG "" "SANITIZER" "" ${ARGN})
  if(ARG_SANITIZER)
    target_precompile_headers(${target} REUSE_FROM unl_torch_pch_${ARG_SANITIZER})
    unl_sanitize(${target} ${ARG_SANITIZER})
  else()
    target_precompile_headers(${target} REUSE_FROM unl_torch_pch)
  endif()
  # The PCH is built with -pthread (_REENTRANT); a user without it could not use the PCH.
  target_compile_options(${target} PRIVATE -pthread)
endfunction()

# Sanitized variants (UNL_SANITIZED_TESTS, docs/sanitizers.md). The server layer (server/,
# server/infra/), the certificate library and their tests are built a second time per kind, in
# the same build directory, with the suffix _<kind>: unl_server_asan, server_tests_asan, ... They
# link the ordinary (uninstrumented) core, LibTorch, gRPC and Abseil: the sanitizers check every
# access our server code makes, and the core's parsers are checked by the fuzzers (tests/fuzz),
# so a second build of the whole core is not paid for in CI.
#   asan: AddressSanitizer (with LeakSanitizer) + UndefinedBehaviorSanitizer, any report fatal.
# GCC warns of maybe-uninitialized members inside libstdc++'s <regex> only when instrumenting
# (its manual: sanitizers may cause spurious warnings); the plain build keeps the warning.
set(UNL_SANITIZER_FLAGS_asan -fsanitize=address,undefined -fno-sanitize-recover=undefined
  -fno-omit-frame-pointer $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
set(UNL_SANITIZER_LINK_asan -fsanitize=address,undefined)
# Compiles and links `target` with the flags of sanitizer `kind`.
function(unl_sanitize target kind)
  if(NOT DEFINED UNL_SANITIZER_FLAGS_${kind})
    message(FATAL_ERROR "unl_sanitize: unknown sanitizer '${kind}'")
  endif()
  target_compile_options(${target} PRIVATE ${UNL_SANITIZER_FLAGS_${kind}})
  # PUBLIC: whatever links a sanitized static library links the sanitizer runtime too.
  target_link_options(${target} PUBLIC ${UNL_SANITIZER_LINK_${kind}})
endfunction()

# Fails the configure step if `target` links (directly) against anything matching `regex`.
function(unl_forbid_link_deps target regex)
  get_target_property(libs ${target} LINK_LIBRARIES)
  foreach(lib IN LISTS libs)
    if(lib MATCHES "${regex}")
      message(FATAL_ERROR "layering: ${target} must not link ${lib} (core/ knows nothing of gRPC/protobuf)")
    endif()
  endforeach()
endfunction()

# unl_openmp_blas: an interface target that makes every executable linking the core load the
# OpenMP build of OpenBLAS (Debian's libopenblas0-openmp) instead of whichever BLAS the system's
# libblas.so.3 alternative points to. LibTorch threads its own kernels with OpenMP; the pthreads
# OpenBLAS (Debian's default) threads every matmul with a pool of its own on top, so with 2
# LibTorch threads on 2 cores each matmul ran 3 threads and a FLAT step was 2.9x slower than with
# 1 (bench/run_bench.sh). The OpenMP build shares LibTorch's pool: 2 threads are then 1.66x faster
# than 1. The executable names the three libraries itself (NEEDED, found through its RPATH), so the
# dynamic loader maps them before LibTorch asks for libblas.so.3 by soname. Without the package
# the default BLAS is used and core::ConfigureThreads() falls back to 1 LibTorch thread.
function(unl_find_openmp_blas)
  set(dir "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp")
  add_library(unl_openmp_blas INTERFACE)
  if(EXISTS "${dir}/libopenblas.so.0" AND EXISTS "${dir}/libblas.so.3"
     AND EXISTS "${dir}/liblapack.so.3")
    target_link_options(unl_openmp_blas INTERFACE "LINKER:-rpath,${dir}")
    target_link_libraries(unl_openmp_blas INTERFACE "-Wl,--push-state,--no-as-needed"
      "${dir}/libopenblas.so.0" "${dir}/libblas.so.3" "${dir}/liblapack.so.3" "-Wl,--pop-state")
    target_compile_definitions(unl_openmp_blas INTERFACE UNL_OPENMP_BLAS=1)
    message(STATUS "BLAS: OpenMP OpenBLAS from ${dir}")
  else()
    message(WARNING "libopenblas0-openmp is not installed (${dir}): LibTorch will run 1 intra-op "
      "thread and let the system BLAS thread matmuls. apt-get install libopenblas0-openmp")
  endif()
endfunction()
