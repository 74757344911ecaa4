// RFC 8785 JSON Canonicalization Scheme (JCS) over nlohmann::json: the byte form certificates are
// hashed and signed in (docs/certificates.md).
//
//   - object members sorted by their names' UTF-16 code units (not UTF-8 bytes), no whitespace;
//   - strings: only '"', '\\' and U+0000..U+001F escaped (\b \f \n \r \t, else \u00xx), every
//     other character verbatim as UTF-8;
//   - numbers as ECMAScript's Number.prototype.toString: the shortest decimal that round-trips
//     the IEEE-754 double, "-0" written "0". Integers beyond +-2^53 are first converted to the
//     nearest double, as a JavaScript parser would.
//
// Thread-safe (pure functions).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace unlearning::core::certs {

// The canonical UTF-8 bytes of `value`. kInvalidArgument for NaN/infinity, invalid UTF-8 in a
// string or a name, or a binary value (none has a JSON form).
absl::StatusOr<std::string> CanonicalJson(const nlohmann::json& value);

// ECMAScript Number.prototype.toString of a finite double ("1e+21", "0.000001", "1e-7", ...).
// kInvalidArgument for NaN or infinity.
absl::StatusOr<std::string> EcmaScriptNumber(double value);

}  // namespace unlearning::core::certs
