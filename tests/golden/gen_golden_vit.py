#!/usr/bin/python3
"""Golden fixtures for the C++ ViT image classifier (core/models/vit*): tiny seeded ViTs and their
logits and features.

Pure PyTorch, written independently of the C++ code to mirror Hugging Face transformers'
modeling_vit.py (ViTEmbeddings with a Conv2d patch projection, CLS token and learned position
embeddings; pre-norm ViTLayer: layernorm_before -> ViTSelfAttention (eager softmax) ->
ViTSelfOutput + residual, layernorm_after -> ViTIntermediate (GELU) -> ViTOutput + residual;
final vit.layernorm; ViTForImageClassification's classifier on the CLS token) and of
ViTImageProcessor's normalisation ((pixel - image_mean) / image_std after rescaling to [0, 1]).
python3-transformers and the safetensors package are not installable here, so the safetensors
writer is our own (the one of gen_golden.py).

Usage: /usr/bin/python3 gen_golden_vit.py OUT_DIR
Writes OUT_DIR/{base,rgb}/ with config.json, preprocessor_config.json, model.safetensors and
golden.safetensors ("images" F32 [B, C, H, W] in [0, 1], "logits" F32 [B, num_labels],
"features" F32 [B, hidden] = the final-layernormed CLS token).
  base: 1 channel 28x28, patch 7, hidden 32, 2 layers, 4 heads, qkv_bias, mean/std normalised.
  rgb:  3 channels 12x12, patch 4, hidden 24, 3 layers, 2 heads, qkv_bias = false.
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import write_safetensors  # noqa: E402

GENERATOR = "tests/golden/gen_golden_vit.py"


# ---- the model, after transformers/models/vit/modeling_vit.py ----


def normalise(cfg, pre, images):
    """ViTImageProcessor normalisation of [0, 1] pixels (rescale already applied)."""
    if not pre.get("do_normalize", True):
        return images
    c = cfg["num_channels"]
    mean = torch.tensor(pre["image_mean"], dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(pre["image_std"], dtype=torch.float32).view(1, c, 1, 1)
    return (images - mean) / std


def vit_forward(cfg, w, pixel_values):
    """pixel_values [B, C, H, W] (normalised) -> (logits [B, L], features [B, hidden])."""
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = cfg["layer_norm_eps"]
    patch = cfg["patch_size"]
    b = pixel_values.shape[0]
    # ViTPatchEmbeddings: Conv2d(kernel = stride = patch).flatten(2).transpose(1, 2)
    x = F.conv2d(
        pixel_values,
        w["vit.embeddings.patch_embeddings.projection.weight"],
        w["vit.embeddings.patch_embeddings.projection.bias"],
        stride=patch,
    )
    x = x.flatten(2).transpose(1, 2)
    cls = w["vit.embeddings.cls_token"].expand(b, -1, -1)
    x = torch.cat((cls, x), dim=1)
    x = x + w["vit.embeddings.position_embeddings"]

    def linear(x, name):
        return F.linear(x, w[name + ".weight"], w.get(name + ".bias"))

    def split_heads(t):
        return t.view(b, -1, heads, head_dim).permute(0, 2, 1, 3)

    for i in range(cfg["num_hidden_layers"]):
        p = f"vit.encoder.layer.{i}."
        h = F.layer_norm(
            x, (hidden,), w[p + "layernorm_before.weight"], w[p + "layernorm_before.bias"], eps
        )
        q = split_heads(linear(h, p + "attention.attention.query"))
        k = split_heads(linear(h, p + "attention.attention.key"))
        v = split_heads(linear(h, p + "attention.attention.value"))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim)
        probs = F.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(b, -1, hidden)
        x = linear(ctx, p + "attention.output.dense") + x
        h = F.layer_norm(
            x, (hidden,), w[p + "layernorm_after.weight"], w[p + "layernorm_after.bias"], eps
        )
        h = F.gelu(linear(h, p + "intermediate.dense"))
        x = linear(h, p + "output.dense") + x
    x = F.layer_norm(x, (hidden,), w["vit.layernorm.weight"], w["vit.layernorm.bias"], eps)
    features = x[:, 0, :]
    return linear(features, "classifier"), features


def make_weights(cfg, seed):
    """Random weights with non-trivial layer norms and biases, so every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    c = cfg["hidden_size"]
    inter = cfg["intermediate_size"]
    ch = cfg["num_channels"]
    patch = cfg["patch_size"]
    tokens = (cfg["image_size"] // patch) ** 2 + 1
    labels = len(cfg["id2label"])

    def normal(*shape, std):
        return torch.randn(*shape, generator=g) * std

    w = {
        "vit.embeddings.cls_token": normal(1, 1, c, std=0.5),
        "vit.embeddings.position_embeddings": normal(1, tokens, c, std=0.5),
        "vit.embeddings.patch_embeddings.projection.weight": normal(
            c, ch, patch, patch, std=(ch * patch * patch) ** -0.5
        ),
        "vit.embeddings.patch_embeddings.projection.bias": normal(c, std=0.1),
    }

    def add_linear(name, out_f, in_f, bias=True):
        w[name + ".weight"] = normal(out_f, in_f, std=in_f**-0.5)
        if bias:
            w[name + ".bias"] = normal(out_f, std=0.1)

    def add_norm(name):
        w[name + ".weight"] = 1.0 + normal(c, std=0.1)
        w[name + ".bias"] = normal(c, std=0.1)

    for i in range(cfg["num_hidden_layers"]):
        p = f"vit.encoder.layer.{i}."
        add_norm(p + "layernorm_before")
        for n in ("query", "key", "value"):
            add_linear(p + "attention.attention." + n, c, c, bias=cfg["qkv_bias"])
        add_linear(p + "attention.output.dense", c, c)
        add_norm(p + "layernorm_after")
        add_linear(p + "intermediate.dense", inter, c)
        add_linear(p + "output.dense", c, inter)
    add_norm("vit.layernorm")
    add_linear("classifier", labels, c)
    return w


def base_config():
    names = ["zero", "one", "two", "three", "four"]
    return {
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "image_size": 28,
        "patch_size": 7,
        "num_channels": 1,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "qkv_bias": True,
        "encoder_stride": 7,
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
        "torch_dtype": "float32",
        "some_unknown_key": {"ignored": True},
    }


def preprocessor(mean, std, size):
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": False,
        "size": {"height": size, "width": size},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
    }


def write_variant(out_dir, name, cfg, pre, seed):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    weights = make_weights(cfg, seed)
    g = torch.Generator().manual_seed(seed + 1000)
    size = cfg["image_size"]
    images = torch.rand(3, cfg["num_channels"], size, size, generator=g)
    with torch.no_grad():
        logits, features = vit_forward(cfg, weights, normalise(cfg, pre, images))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), weights, {"format": "pt"})
    write_safetensors(
        os.path.join(d, "golden.safetensors"),
        {"images": images, "logits": logits.float(), "features": features.float()},
        {"generator": GENERATOR, "torch": torch.__version__},
    )


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_golden_vit.py OUT_DIR")
    out_dir = sys.argv[1]
    torch.set_num_threads(1)

    cfg = base_config()
    write_variant(out_dir, "base", cfg, preprocessor([0.286], [0.353], 28), seed=5)

    rgb = dict(
        cfg,
        image_size=12,
        patch_size=4,
        num_channels=3,
        hidden_size=24,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=40,
        qkv_bias=False,
        layer_norm_eps=1e-6,
        id2label={"0": "cat", "1": "dog", "2": "bird"},
        label2id={"cat": 0, "dog": 1, "bird": 2},
    )
    write_variant(out_dir, "rgb", rgb, preprocessor([0.5, 0.4, 0.3], [0.2, 0.25, 0.3], 12), seed=9)


if __name__ == "__main__":
    main()
