#!/usr/bin/python3
"""Golden fixtures for the C++ Llama (core/models): tiny seeded Llama models and their logits.

Pure PyTorch, written independently of the C++ code to mirror Hugging Face transformers'
modeling_llama.py (LlamaRMSNorm, LlamaRotaryEmbedding + rotate_half, repeat_kv, eager attention
with an additive causal mask and float32 softmax, LlamaMLP). python3-transformers and the
safetensors package are not installable here, so the safetensors writer below is our own.

Usage: /usr/bin/python3 gen_golden.py OUT_DIR
Writes OUT_DIR/{f32,bf16,tied}/ with config.json, model.safetensors, tokenizer_config.json and
golden.safetensors ("input_ids" I64 [B, T], "logits" F32 [B, T, V]).
  f32:  float32 weights.
  bf16: the f32 weights rounded to bfloat16 and stored as BF16; logits computed in float32 from
        the upcast bf16 weights (as the C++ loader does).
  tied: tie_word_embeddings = true (no lm_head.weight tensor), 1 kv head (multi-query).
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

GENERATOR = "tests/golden/gen_golden.py"

_DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
}


def write_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer: u64 LE header length, JSON header, raw LE tensor bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {
            "dtype": _DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


# ---- the model, after transformers/models/llama/modeling_llama.py ----


def rms_norm(hidden_states, weight, eps):
    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.to(torch.float32)
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    hidden_states = hidden_states * torch.rsqrt(variance + eps)
    return weight * hidden_states.to(input_dtype)


def rotary_cos_sin(seq_len, dim, base):
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    t = torch.arange(seq_len, dtype=torch.int64).float()
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    # q, k: [B, heads, T, D]; cos, sin: [T, D]
    cos = cos[None, None, :, :]
    sin = sin[None, None, :, :]
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(
        batch, num_key_value_heads, n_rep, slen, head_dim
    )
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def llama_forward(cfg, w, input_ids):
    """input_ids [B, T] -> logits [B, T, V] (float32)."""
    bsz, q_len = input_ids.shape
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg["num_key_value_heads"]
    head_dim = cfg["hidden_size"] // n_heads
    eps = cfg["rms_norm_eps"]
    h = F.embedding(input_ids, w["model.embed_tokens.weight"])
    cos, sin = rotary_cos_sin(q_len, head_dim, cfg["rope_theta"])
    min_value = torch.finfo(torch.float32).min
    causal_mask = torch.full((q_len, q_len), min_value).triu(1)[None, None]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        residual = h
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = F.linear(x, w[p + "self_attn.q_proj.weight"])
        k = F.linear(x, w[p + "self_attn.k_proj.weight"])
        v = F.linear(x, w[p + "self_attn.v_proj.weight"])
        q = q.view(bsz, q_len, n_heads, head_dim).transpose(1, 2)
        k = k.view(bsz, q_len, n_kv, head_dim).transpose(1, 2)
        v = v.view(bsz, q_len, n_kv, head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = repeat_kv(k, n_heads // n_kv)
        v = repeat_kv(v, n_heads // n_kv)
        attn = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(head_dim)
        attn = attn + causal_mask
        attn = F.softmax(attn, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(attn, v).transpose(1, 2).contiguous()
        out = out.reshape(bsz, q_len, n_heads * head_dim)
        h = residual + F.linear(out, w[p + "self_attn.o_proj.weight"])
        residual = h
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = F.silu(F.linear(x, w[p + "mlp.gate_proj.weight"]))
        up = F.linear(x, w[p + "mlp.up_proj.weight"])
        h = residual + F.linear(gate * up, w[p + "mlp.down_proj.weight"])
    h = rms_norm(h, w["model.norm.weight"], eps)
    lm_head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return F.linear(h, lm_head)


def make_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    c = cfg["hidden_size"]
    inter = cfg["intermediate_size"]
    head_dim = c // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * head_dim

    def normal(*shape, std):
        return torch.randn(*shape, generator=g) * std

    def norm_weight():
        return 1.0 + normal(c, std=0.1)

    w = {"model.embed_tokens.weight": normal(cfg["vocab_size"], c, std=1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm_weight()
        w[p + "self_attn.q_proj.weight"] = normal(c, c, std=c**-0.5)
        w[p + "self_attn.k_proj.weight"] = normal(kv, c, std=c**-0.5)
        w[p + "self_attn.v_proj.weight"] = normal(kv, c, std=c**-0.5)
        w[p + "self_attn.o_proj.weight"] = normal(c, c, std=c**-0.5)
        w[p + "post_attention_layernorm.weight"] = norm_weight()
        w[p + "mlp.gate_proj.weight"] = normal(inter, c, std=c**-0.5)
        w[p + "mlp.up_proj.weight"] = normal(inter, c, std=c**-0.5)
        w[p + "mlp.down_proj.weight"] = normal(c, inter, std=inter**-0.5)
    w["model.norm.weight"] = norm_weight()
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal(cfg["vocab_size"], c, std=c**-0.5)
    return w


def base_config():
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 259,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "torch_dtype": "float32",
        "some_unknown_key": {"ignored": True},
    }


def input_ids():
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, 259, (2, 17), generator=g)
    ids[:, 0] = 1  # BOS
    return ids


def write_variant(out_dir, name, cfg, weights, storage_dtype):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    stored = {k: v.to(storage_dtype) for k, v in weights.items()}
    compute = {k: v.to(torch.float32) for k, v in stored.items()}
    ids = input_ids()
    with torch.no_grad():
        logits = llama_forward(cfg, compute, ids)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "tokenizer_class": "UnlearningByteTokenizer",
                "unlearning_tokenizer": "byte",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "pad_token": "<pad>",
            },
            f,
        )
    write_safetensors(os.path.join(d, "model.safetensors"), stored, {"format": "pt"})
    write_safetensors(
        os.path.join(d, "golden.safetensors"),
        {"input_ids": ids, "logits": logits.float()},
        {"generator": GENERATOR, "torch": torch.__version__},
    )


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_golden.py OUT_DIR")
    out_dir = sys.argv[1]
    torch.set_num_threads(1)

    cfg = base_config()
    weights = make_weights(cfg, seed=7)
    write_variant(out_dir, "f32", cfg, weights, torch.float32)

    cfg_bf16 = dict(cfg, torch_dtype="bfloat16")
    write_variant(out_dir, "bf16", cfg_bf16, weights, torch.bfloat16)

    cfg_tied = dict(cfg, tie_word_embeddings=True, num_key_value_heads=1, rope_theta=500000.0)
    write_variant(out_dir, "tied", cfg_tied, make_weights(cfg_tied, seed=11), torch.float32)


if __name__ == "__main__":
    main()
