#!/usr/bin/env bash
# Configures and builds everything (server, client, tools, tests, bench) into ${UNL_BUILD_DIR:-build}.
# Uses Ninja and ccache when present; -Wall -Wextra -Werror on our own code.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${UNL_BUILD_DIR:-$root/build}"
jobs="${UNL_JOBS:-$(nproc)}"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNL_WERROR=ON >/dev/null
fi
cmake --build "$build" -j "$jobs" "$@"
