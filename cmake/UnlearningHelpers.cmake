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
function(unl_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM unl_torch_pch)
  # The PCH is built with -pthread (_REENTRANT); a user without it could not use the PCH.
  target_compile_options(${target} PRIVATE -pthread)
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
