#!/usr/bin/python3
"""Golden fixtures for the C++ Llama (core/models): tiny seeded Llama models and their logits.

Pure PyTorch, written independently of the C++ code to mirror Hugging Face transformers'
modeling_llama.py (LlamaRMSNorm, LlamaRotaryEmbedding + rotate_half, repeat_kv, eager attention
with an additive causal mask and float32 softmax, LlamaMLP), plus what modeling_qwen2.py /
configuration_qwen2.py (q/k/v biases; sliding window only with use_sliding_window, on layers >=
max_window_layers), modeling_mistral.py with masking_utils.py (sliding window: key j is seen by
query i iff j <= i and j > i - sliding_window) and modeling_rope_utils.py (the "linear" and "llama3"
inverse-frequency functions) change. python3-transformers and the safetensors package are not
installable here, so the safetensors writer below is our own.

Usage: /usr/bin/python3 gen_golden.py OUT_DIR
Writes OUT_DIR/{f32,bf16,tied}/ with config.json, model.safetensors, tokenizer_config.json and
golden.safetensors ("input_ids" I64 [B, T], "logits" F32 [B, T, V]).
  f32:  float32 weights.
  bf16: the f32 weights rounded to bfloat16 and stored as BF16; logits computed in float32 from
        the upcast bf16 weights (as the C++ loader does).
  tied: tie_word_embeddings = true (no lm_head.weight tensor), 1 kv head (multi-query).
  llama_bias:  Llama with attention_bias and mlp_bias (biases on q/k/v/o and gate/up/down).
  qwen2:       Qwen2ForCausalLM (q/k/v biases); use_sliding_window false with a small
               sliding_window, which must therefore not mask.
  qwen2_sw:    Qwen2 with use_sliding_window, sliding_window 4, max_window_layers 1: layer 0 full,
               layer 1 windowed.
  mistral_sw:  MistralForCausalLM with sliding_window 4 (< T = 17, so the window masks).
  llama3_rope: rope_scaling {"rope_type": "llama3", ...} with all three frequency bands present.
  linear_rope: rope_scaling {"type": "linear", "factor": 4} (the older "type" key).
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


def default_inv_freq(dim, base):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def llama3_bands(cfg, inv_freq):
    """(high, medium, low) boolean masks of the llama3 frequency bands of inv_freq."""
    rs = cfg["rope_scaling"]
    old_context_len = rs.get("original_max_position_embeddings", cfg["max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    high = wavelen < old_context_len / rs["high_freq_factor"]
    low = wavelen > old_context_len / rs["low_freq_factor"]
    return high, ~high & ~low, low


def rope_inv_freq(cfg):
    """After modeling_rope_utils: default, "linear" (inv_freq / factor) and "llama3"."""
    dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    inv_freq = default_inv_freq(dim, cfg["rope_theta"])
    rs = cfg.get("rope_scaling")
    if rs is None:
        return inv_freq
    rope_type = rs.get("rope_type", rs.get("type"))
    if rope_type == "linear":
        return inv_freq / rs["factor"]
    assert rope_type == "llama3", rope_type
    factor = rs["factor"]
    low_f, high_f = rs["low_freq_factor"], rs["high_freq_factor"]
    old_context_len = rs.get("original_max_position_embeddings", cfg["max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    high, medium, low = llama3_bands(cfg, inv_freq)
    out = torch.where(low, inv_freq / factor, inv_freq)
    smooth = (old_context_len / wavelen - low_f) / (high_f - low_f)
    out = torch.where(medium, (1 - smooth) * out / factor + smooth * out, out)
    return out


def rotary_cos_sin(seq_len, inv_freq):
    t = torch.arange(seq_len, dtype=torch.int64).float()
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def layer_window(cfg, i):
    """The sliding window of layer i, or None (full causal attention)."""
    model_type = cfg.get("model_type", "llama")
    if model_type == "mistral":
        return cfg.get("sliding_window")
    if model_type == "qwen2":
        if not cfg.get("use_sliding_window", False) or cfg.get("sliding_window") is None:
            return None
        return cfg["sliding_window"] if i >= cfg.get("max_window_layers", 28) else None
    return None


def causal_mask(q_len, window):
    """Additive [1, 1, T, T]: 0 where key j is visible from query i, finfo.min elsewhere."""
    q_idx = torch.arange(q_len)[:, None]
    kv_idx = torch.arange(q_len)[None, :]
    visible = kv_idx <= q_idx
    if window is not None:
        visible = visible & (kv_idx > q_idx - window)
    mask = torch.zeros(q_len, q_len)
    mask.masked_fill_(~visible, torch.finfo(torch.float32).min)
    return mask[None, None]


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


def linear(x, w, name):
    """nn.Linear with the checkpoint's "<name>.weight" and, if present, "<name>.bias"."""
    return F.linear(x, w[name + ".weight"], w.get(name + ".bias"))


def bias_names(cfg):
    """Which projections carry a bias: Qwen2 q/k/v; Llama attention_bias q/k/v/o, mlp_bias MLP."""
    model_type = cfg.get("model_type", "llama")
    if model_type == "qwen2":
        return ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
    names = []
    if model_type == "llama" and cfg.get("attention_bias", False):
        names += ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    if model_type == "llama" and cfg.get("mlp_bias", False):
        names += ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    return names


def llama_forward(cfg, w, input_ids):
    """input_ids [B, T] -> logits [B, T, V] (float32)."""
    bsz, q_len = input_ids.shape
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg["num_key_value_heads"]
    head_dim = cfg["hidden_size"] // n_heads
    eps = cfg["rms_norm_eps"]
    h = F.embedding(input_ids, w["model.embed_tokens.weight"])
    cos, sin = rotary_cos_sin(q_len, rope_inv_freq(cfg))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        residual = h
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = linear(x, w, p + "self_attn.q_proj")
        k = linear(x, w, p + "self_attn.k_proj")
        v = linear(x, w, p + "self_attn.v_proj")
        q = q.view(bsz, q_len, n_heads, head_dim).transpose(1, 2)
        k = k.view(bsz, q_len, n_kv, head_dim).transpose(1, 2)
        v = v.view(bsz, q_len, n_kv, head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = repeat_kv(k, n_heads // n_kv)
        v = repeat_kv(v, n_heads // n_kv)
        attn = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(head_dim)
        attn = attn + causal_mask(q_len, layer_window(cfg, i))
        attn = F.softmax(attn, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(attn, v).transpose(1, 2).contiguous()
        out = out.reshape(bsz, q_len, n_heads * head_dim)
        h = residual + linear(out, w, p + "self_attn.o_proj")
        residual = h
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = F.silu(linear(x, w, p + "mlp.gate_proj"))
        up = linear(x, w, p + "mlp.up_proj")
        h = residual + linear(gate * up, w, p + "mlp.down_proj")
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
        for name in bias_names(cfg):
            w[p + name + ".bias"] = normal(w[p + name + ".weight"].shape[0], std=0.5)
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

    cfg_bias = dict(cfg, attention_bias=True, mlp_bias=True)
    write_variant(out_dir, "llama_bias", cfg_bias, make_weights(cfg_bias, seed=13), torch.float32)

    qwen2 = {k: v for k, v in cfg.items() if k != "some_unknown_key"}
    qwen2.update(
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        rope_theta=1000000.0,
        use_sliding_window=False,
        sliding_window=3,
        max_window_layers=0,
        attention_dropout=0.0,
    )
    qwen2_weights = make_weights(qwen2, seed=17)
    write_variant(out_dir, "qwen2", qwen2, qwen2_weights, torch.float32)
    qwen2_sw = dict(qwen2, use_sliding_window=True, sliding_window=4, max_window_layers=1)
    write_variant(out_dir, "qwen2_sw", qwen2_sw, qwen2_weights, torch.float32)

    mistral = {k: v for k, v in cfg.items() if k != "some_unknown_key"}
    mistral.update(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=4)
    write_variant(out_dir, "mistral_sw", mistral, make_weights(mistral, seed=19), torch.float32)

    # Llama 3 RoPE: head_dim 16 with theta 10000 gives wavelengths 2 pi 10000^(i/8), i = 0..7
    # (6.3, 20, 63, 199, 628, ...); with original_max_position_embeddings 256, low_freq_factor 1
    # and high_freq_factor 8 the high band is wavelength < 32, the low band > 256.
    llama3 = dict(
        cfg,
        max_position_embeddings=2048,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 8.0,
            "original_max_position_embeddings": 256,
        },
    )
    head_dim = llama3["hidden_size"] // llama3["num_attention_heads"]
    bands = llama3_bands(llama3, default_inv_freq(head_dim, llama3["rope_theta"]))
    assert all(int(b.sum()) >= 1 for b in bands), [int(b.sum()) for b in bands]
    write_variant(out_dir, "llama3_rope", llama3, make_weights(llama3, seed=23), torch.float32)

    linear = dict(cfg, rope_scaling={"type": "linear", "factor": 4.0})
    write_variant(out_dir, "linear_rope", linear, make_weights(linear, seed=29), torch.float32)


if __name__ == "__main__":
    main()
