#!/usr/bin/python3
"""A random-weight Qwen2 checkpoint with a real Qwen tokenizer, and its greedy continuation.

Writes a Hugging Face Qwen2ForCausalLM directory (config.json with Qwen's vocabulary size 151936,
tied embeddings, q/k/v biases; model.safetensors; the tokenizer.json and tokenizer_config.json of
TOKENIZER_DIR copied as they are) and prints, as one JSON line, the greedy continuation of
PROMPT_IDS computed by the independent PyTorch mirror of tests/golden/gen_golden.py (full
recompute each step, no cache), with the smallest top-1/top-2 logit gap met on the way (a gap far
above float error makes the expected tokens unambiguous).

Usage: /usr/bin/python3 gen_qwen2_checkpoint.py OUT_DIR TOKENIZER_DIR PROMPT_IDS NEW_TOKENS
  PROMPT_IDS: comma-separated token ids.
"""

import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import llama_forward, make_weights, write_safetensors  # noqa: E402


def config():
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": 512,
        "max_window_layers": 2,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "torch_dtype": "float32",
    }


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: gen_qwen2_checkpoint.py OUT_DIR TOKENIZER_DIR PROMPT_IDS NEW_TOKENS")
    out_dir, tokenizer_dir, prompt, new_tokens = sys.argv[1:]
    torch.set_num_threads(1)
    cfg = config()
    w = make_weights(cfg, seed=31)
    # Embeddings (and the tied head) at std 0.1: near-uniform next-token distributions, like an
    # untrained model, with logit gaps far above float error.
    w["model.embed_tokens.weight"] *= 0.1
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), w, {"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out_dir, name))

    ids = [int(x) for x in prompt.split(",")]
    generated = []
    min_gap = float("inf")
    with torch.no_grad():
        for _ in range(int(new_tokens)):
            logits = llama_forward(cfg, w, torch.tensor([ids]))[0, -1]
            top = torch.topk(logits, 2)
            min_gap = min(min_gap, float(top.values[0] - top.values[1]))
            nxt = int(top.indices[0])
            if nxt == cfg["eos_token_id"]:
                break
            generated.append(nxt)
            ids.append(nxt)
    print(json.dumps({"greedy": generated, "min_gap": min_gap}))


if __name__ == "__main__":
    main()
