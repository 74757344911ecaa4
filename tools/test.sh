#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds, and runs every test suite (unit, behaviour,
# integration, e2e). The demo model is built once by the ctest fixture `demo_model` and cached in
# .cache/demo. Extra arguments go to ctest (e.g. -L unit, -R Journal).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${UNL_BUILD_DIR:-$root/build}"
"$root/tools/setup.sh"
"$root/tools/build.sh"
cd "$build"
ctest --output-on-failure --timeout 1800 "$@"
