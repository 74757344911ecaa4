#!/usr/bin/env bash
# Installs every Debian 12 package the project needs (build, run, test, bench).
# Idempotent; quiet unless something fails. Must run as root (or via sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git clang-format
  libtorch-dev python3-torch libopenblas0-pthread libopenblas-pthread-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libcpp-httplib-dev nlohmann-json3-dev
  libsqlite3-dev libssl-dev zlib1g-dev libgtest-dev libgmock-dev
  libcli11-dev prometheus curl jq python3 dataset-fashion-mnist
)

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

# LibTorch dispatches BLAS through the system alternative: make sure it is OpenBLAS
# (the reference BLAS is ~30x slower on this kind of machine).
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  target=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas-pthread || true)
  if [[ -n "$target" ]]; then $SUDO update-alternatives --quiet --set "$alt" "$target"; fi
done
