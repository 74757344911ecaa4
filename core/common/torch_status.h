// The one boundary where exceptions (c10::Error, std::exception) become absl::Status.
#pragma once

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace unlearning::core {

// Runs `fn` and converts any exception it throws into kInternal (kResourceExhausted for
// std::bad_alloc), prefixed with `what`. `fn` returns void, absl::Status or absl::StatusOr<T>.
template <typename Fn>
auto TorchCall(const char* what, Fn&& fn) {
  using R = std::invoke_result_t<Fn>;
  auto fail = [&](absl::StatusCode code, const std::string& msg) {
    return absl::Status(code, absl::StrCat(what, ": ", msg));
  };
  if constexpr (std::is_void_v<R>) {
    try {
      fn();
      return absl::OkStatus();
    } catch (const std::bad_alloc& e) {
      return fail(absl::StatusCode::kResourceExhausted, "out of memory");
    } catch (const std::exception& e) {
      return fail(absl::StatusCode::kInternal, e.what());
    }
  } else {
    try {
      return R(fn());
    } catch (const std::bad_alloc& e) {
      return R(fail(absl::StatusCode::kResourceExhausted, "out of memory"));
    } catch (const std::exception& e) {
      return R(fail(absl::StatusCode::kInternal, e.what()));
    }
  }
}

}  // namespace unlearning::core
