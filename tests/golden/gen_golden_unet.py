#!/usr/bin/python3
"""Golden fixtures for the C++ UNet2DModel (core/models/unet.*): tiny seeded class-conditional
UNets and their ε-predictions.

Pure PyTorch, written independently of the C++ code to mirror diffusers' UNet2DModel
(diffusers/models/unet_2d.py, unet_2d_blocks.py: DownBlock2D / UNetMidBlock2D without attention /
UpBlock2D; resnet.py: ResnetBlock2D, Downsample2D, Upsample2D; embeddings.py:
get_timestep_embedding, TimestepEmbedding) with diffusers' parameter names. diffusers is not
installable here; its maths is reproduced from the v0.21 sources.

Usage: /usr/bin/python3 gen_golden_unet.py OUT_DIR
Writes OUT_DIR/{small,deep}/ with model_index.json, unet/config.json,
unet/diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json and golden.safetensors
("sample" F32 [B, C, H, W], "timesteps" I64 [B], "class_labels" I64 [B], "noise_pred" F32
[B, C, H, W]).
  small: 2 levels, layers_per_block 1, 1 channel, 8x8, groups 4.
  deep:  3 levels, layers_per_block 2, 2 channels, 12x12 (non-power-of-two), flip_sin_to_cos
         false and freq_shift 1 (the other time-embedding variant), groups 2.
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

GENERATOR = "tests/golden/gen_golden_unet.py"

_DTYPE_NAMES = {torch.float32: "F32", torch.int64: "I64"}


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


# ---- the model, after diffusers ----


def timestep_embedding(timesteps, dim, flip_sin_to_cos, shift, max_period=10000):
    """diffusers embeddings.get_timestep_embedding."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - shift)
    emb = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class Unet:
    """Functional UNet2DModel over a dict of named parameters."""

    def __init__(self, config, params):
        self.c = config
        self.p = params

    def conv(self, name, x, stride=1):
        w = self.p[name + ".weight"]
        return F.conv2d(x, w, self.p[name + ".bias"], stride=stride, padding=w.shape[-1] // 2)

    def linear(self, name, x):
        return F.linear(x, self.p[name + ".weight"], self.p[name + ".bias"])

    def norm(self, name, x, groups):
        return F.group_norm(x, groups, self.p[name + ".weight"], self.p[name + ".bias"],
                            self.c["norm_eps"])

    def resnet(self, name, x, temb):
        g = self.c["norm_num_groups"]
        h = self.conv(name + ".conv1", F.silu(self.norm(name + ".norm1", x, g)))
        h = h + self.linear(name + ".time_emb_proj", F.silu(temb))[:, :, None, None]
        h = self.conv(name + ".conv2", F.silu(self.norm(name + ".norm2", h, g)))
        if name + ".conv_shortcut.weight" in self.p:
            x = self.conv(name + ".conv_shortcut", x)
        return x + h

    def forward(self, sample, timesteps, class_labels):
        c = self.c
        boc = c["block_out_channels"]
        n = len(boc)
        t_emb = timestep_embedding(timesteps, boc[0], c["flip_sin_to_cos"], c["freq_shift"])
        emb = self.linear("time_embedding.linear_2",
                          F.silu(self.linear("time_embedding.linear_1", t_emb)))
        emb = emb + F.embedding(class_labels, self.p["class_embedding.weight"])
        x = self.conv("conv_in", sample)
        skips = [x]
        for i in range(n):
            for j in range(c["layers_per_block"]):
                x = self.resnet(f"down_blocks.{i}.resnets.{j}", x, emb)
                skips.append(x)
            if i != n - 1:
                x = self.conv(f"down_blocks.{i}.downsamplers.0.conv", x, stride=2)
                skips.append(x)
        x = self.resnet("mid_block.resnets.0", x, emb)
        x = self.resnet("mid_block.resnets.1", x, emb)
        for i in range(n):
            for j in range(c["layers_per_block"] + 1):
                x = torch.cat([x, skips.pop()], dim=1)
                x = self.resnet(f"up_blocks.{i}.resnets.{j}", x, emb)
            if i != n - 1:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                x = self.conv(f"up_blocks.{i}.upsamplers.0.conv", x)
        x = F.silu(self.norm("conv_norm_out", x, c["norm_num_groups"]))
        return self.conv("conv_out", x)


def make_params(c, gen):
    """Parameter shapes as diffusers' UNet2DModel.__init__ creates them, random values."""
    shapes = {}

    def conv(name, cin, cout, k=3):
        shapes[name + ".weight"] = (cout, cin, k, k)
        shapes[name + ".bias"] = (cout,)

    def linear(name, cin, cout):
        shapes[name + ".weight"] = (cout, cin)
        shapes[name + ".bias"] = (cout,)

    def norm(name, ch):
        shapes[name + ".weight"] = (ch,)
        shapes[name + ".bias"] = (ch,)

    boc = c["block_out_channels"]
    temb = boc[0] * 4

    def resnet(name, cin, cout):
        norm(name + ".norm1", cin)
        conv(name + ".conv1", cin, cout)
        linear(name + ".time_emb_proj", temb, cout)
        norm(name + ".norm2", cout)
        conv(name + ".conv2", cout, cout)
        if cin != cout:
            conv(name + ".conv_shortcut", cin, cout, k=1)

    conv("conv_in", c["in_channels"], boc[0])
    linear("time_embedding.linear_1", boc[0], temb)
    linear("time_embedding.linear_2", temb, temb)
    shapes["class_embedding.weight"] = (c["num_class_embeds"], temb)
    out_ch = boc[0]
    for i, ch in enumerate(boc):
        in_ch, out_ch = out_ch, ch
        for j in range(c["layers_per_block"]):
            resnet(f"down_blocks.{i}.resnets.{j}", in_ch if j == 0 else out_ch, out_ch)
        if i != len(boc) - 1:
            conv(f"down_blocks.{i}.downsamplers.0.conv", out_ch, out_ch)
    resnet("mid_block.resnets.0", boc[-1], boc[-1])
    resnet("mid_block.resnets.1", boc[-1], boc[-1])
    rev = list(reversed(boc))
    out_ch = rev[0]
    for i in range(len(boc)):
        prev, out_ch = out_ch, rev[i]
        in_ch = rev[min(i + 1, len(boc) - 1)]
        layers = c["layers_per_block"] + 1
        for j in range(layers):
            skip = in_ch if j == layers - 1 else out_ch
            resnet(f"up_blocks.{i}.resnets.{j}", (prev if j == 0 else out_ch) + skip, out_ch)
        if i != len(boc) - 1:
            conv(f"up_blocks.{i}.upsamplers.0.conv", out_ch, out_ch)
    norm("conv_norm_out", boc[0])
    conv("conv_out", boc[0], c["out_channels"])
    params = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or \
                name == "conv_norm_out.weight":
            params[name] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = max(1, math.prod(shape[1:])) if len(shape) > 1 else 4
            params[name] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    return params


def unet_config(sample_size, channels, boc, layers, groups, classes, flip, shift):
    return {
        "_class_name": "UNet2DModel",
        "_diffusers_version": "0.21.4",
        "sample_size": sample_size,
        "in_channels": channels,
        "out_channels": channels,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "freq_shift": shift,
        "flip_sin_to_cos": flip,
        "down_block_types": ["DownBlock2D"] * len(boc),
        "up_block_types": ["UpBlock2D"] * len(boc),
        "block_out_channels": boc,
        "layers_per_block": layers,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": 0.0,
        "act_fn": "silu",
        "attention_head_dim": None,
        "norm_num_groups": groups,
        "norm_eps": 1e-5,
        "resnet_time_scale_shift": "default",
        "add_attention": False,
        "class_embed_type": None,
        "num_class_embeds": classes + 1,
        "null_class_id": classes,
        "id2label": {str(i): f"class{i}" for i in range(classes)},
    }


SCHEDULER = {
    "_class_name": "DDPMScheduler",
    "_diffusers_version": "0.21.4",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "variance_type": "fixed_small",
}


def write_variant(out, name, config, seed, batch):
    gen = torch.Generator().manual_seed(seed)
    params = make_params(config, gen)
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "unet"), exist_ok=True)
    os.makedirs(os.path.join(d, "scheduler"), exist_ok=True)
    with open(os.path.join(d, "model_index.json"), "w") as f:
        json.dump({"_class_name": "DDPMPipeline", "_diffusers_version": "0.21.4",
                   "unet": ["diffusers", "UNet2DModel"],
                   "scheduler": ["diffusers", "DDPMScheduler"]}, f, indent=2)
    with open(os.path.join(d, "unet", "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(d, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER, f, indent=2)
    write_safetensors(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"), params,
                      {"format": "pt", "generator": GENERATOR})
    s = config["sample_size"]
    sample = torch.randn((batch, config["in_channels"], s, s), generator=gen)
    timesteps = torch.randint(0, 1000, (batch,), generator=gen)
    labels = torch.randint(0, config["num_class_embeds"], (batch,), generator=gen)
    with torch.no_grad():
        pred = Unet(config, params).forward(sample, timesteps, labels)
    write_safetensors(os.path.join(d, "golden.safetensors"),
                      {"sample": sample, "timesteps": timesteps, "class_labels": labels,
                       "noise_pred": pred}, {"generator": GENERATOR})


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    write_variant(out, "small", unet_config(8, 1, [8, 16], 1, 4, 3, True, 0), seed=1, batch=3)
    write_variant(out, "deep", unet_config(12, 2, [4, 8, 8], 2, 2, 4, False, 1), seed=2, batch=2)


if __name__ == "__main__":
    main()
