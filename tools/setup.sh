#!/usr/bin/env bash
# Installs every Debian 12 package the project needs (build, run, test, bench).
# Idempotent; quiet unless something fails. Must run as root (or via sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git clang-format
  libtorch-dev python3-torch libopenblas0-openmp libopenblas0-pthread libopenblas-pthread-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libcpp-httplib-dev nlohmann-json3-dev
  libsqlite3-dev libssl-dev openssl zlib1g-dev libgtest-dev libgmock-dev
  libcli11-dev prometheus curl jq python3 dataset-fashion-mnist libicu-dev
  python3-jinja2
  clang-14 libclang-rt-14-dev llvm-14  # libFuzzer, sanitizers, llvm-symbolizer: tools/fuzz.sh
)
# Node.js and npm run the reference tokenizers of the tokenizer parity test (tools/fetch_tokenizers.sh,
# tests/golden/tokenizer_golden.mjs); not needed to build or serve (UNL_SETUP_NODE=0 skips them, as
# the Dockerfile does). A node already on the PATH (e.g. NodeSource's, which bundles npm) is kept.
if [[ "${UNL_SETUP_NODE:-1}" != 0 ]] && ! { command -v node && command -v npm; } >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  log=$(mktemp)
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: apt-get install failed for: ${missing[*]}" >&2
    exit 1
  fi
  rm -f "$log"
fi

# LibTorch dispatches BLAS through the system alternative: make it the OpenMP build of OpenBLAS
# (the reference BLAS is ~30x slower on this kind of machine, and the pthreads OpenBLAS runs a
# thread pool of its own beside LibTorch's OpenMP pool, which made 2 LibTorch threads 2.9x slower
# than 1 on a FLAT step; see bench/run_bench.sh). Our own binaries load the OpenMP build through
# their RPATH whatever the alternative says (cmake/UnlearningHelpers.cmake); the alternative makes
# Python's torch (bench/flat_step.py, tests/golden) use the same library.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu \
           libopenblas.so.0-x86_64-linux-gnu; do
  target=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas-openmp || true)
  if [[ -z "$target" ]]; then
    target=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas-pthread || true)
  fi
  if [[ -n "$target" ]]; then $SUDO update-alternatives --quiet --set "$alt" "$target"; fi
done
