#!/usr/bin/env bash
# HfTokenizer vs the JavaScript reference (@lenml/tokenizers): encode throughput on the golden
# corpus for the real Llama 2, Llama 3 and Qwen3 tokenizers, one table each.
#   bench/tokenizer_bench.sh [--build-dir build] [--rounds 20]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="build"
ROUNDS=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "tokenizer_bench.sh: unknown argument $1" >&2; exit 1 ;;
  esac
done
CACHE="${UNL_TOKENIZERS_DIR:-$REPO/.cache/tokenizers}"
CORPUS="$REPO/tests/golden/tokenizer_corpus.jsonl"
"$REPO/tools/fetch_tokenizers.sh" --cache "$CACHE"
cmake --build "$BUILD_DIR" --target bench_tokenizer >/dev/null
echo "== ours (HfTokenizer, C++)"
"$BUILD_DIR/bench/bench_tokenizer" --cache "$CACHE" --corpus "$CORPUS" --rounds "$ROUNDS"
echo "== reference (@lenml/tokenizers on node $(node --version))"
node "$REPO/bench/tokenizer_reference.mjs" "$CACHE" "$CORPUS" "$ROUNDS"
