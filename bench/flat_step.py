#!/usr/bin/python3
"""Times one FLAT training step in Python PyTorch: the reference side of bench/run_bench.sh.

Loads the same model.safetensors and the same batch (written by bench_flat_step --dump-batch) as
the C++ benchmark and runs the same step: forward on the forget and template batches, FLAT-KL loss
(per-example form: mean_b[-Pe_b + exp(Pf_b - 1)], P = mean answer-token probability), backward,
AdamW step. The Llama forward is tests/golden/gen_golden.py's (a transcription of Hugging Face's
modeling_llama.py). Prints one JSON object like bench_flat_step's.

Usage: /usr/bin/python3 bench/flat_step.py --model DIR --batch batch.safetensors --threads N
"""

import argparse
import ctypes
import json
import os
import statistics
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
from gen_golden import llama_forward  # noqa: E402

_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path):
    """Minimal safetensors reader: u64 LE header length, JSON header, raw LE tensor bytes."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin : base + end])
        dtype = _DTYPES[info["dtype"]]
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors


def mean_answer_probability(logits, labels):
    """[B, T, V], [B, T] -> [B]: mean probability of the supervised (label != -100) tokens."""
    mask = labels.ne(-100)
    probs = F.softmax(logits.float(), dim=-1)
    p = probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    counts = mask.sum(-1).float()
    return torch.where(counts > 0, p.sum(-1) / counts.clamp(min=1), torch.zeros_like(counts))


def flat_kl_loss(template_prob, forget_prob):
    return (-template_prob + torch.exp(forget_prob - 1.0)).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = {"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False}
    with open(os.path.join(args.model, "config.json")) as f:
        cfg.update(json.load(f))
    weights = {
        k: v.float().requires_grad_(True)
        for k, v in read_safetensors(os.path.join(args.model, "model.safetensors")).items()
    }
    batch = read_safetensors(args.batch)
    fb_ids, fb_labels = batch["forget_ids"], batch["forget_labels"]
    tb_ids, tb_labels = batch["template_ids"], batch["template_labels"]

    optimizer = torch.optim.AdamW(list(weights.values()), lr=args.lr, weight_decay=0.01)
    times = []
    first_loss = None
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        optimizer.zero_grad()
        forget_logits = llama_forward(cfg, weights, fb_ids)
        template_logits = llama_forward(cfg, weights, tb_ids)
        loss = flat_kl_loss(
            mean_answer_probability(template_logits, tb_labels),
            mean_answer_probability(forget_logits, fb_labels),
        )
        loss.backward()
        optimizer.step()
        value = loss.item()
        if i == 0:
            first_loss = value
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "impl": "python",
                "threads": torch.get_num_threads(),
                "blas": blas_threading(),
                "torch": torch.__version__,
                "repeats": args.repeats,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "first_loss": first_loss,
            }
        )
    )


def blas_threading():
    """Threading of the OpenBLAS torch loaded (openblas_get_parallel), as core::BlasThreadingName."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0", mode=os.RTLD_NOLOAD)
        return {0: "sequential", 1: "pthreads", 2: "OpenMP"}.get(lib.openblas_get_parallel(), "unknown")
    except (OSError, AttributeError):
        return "unknown"


if __name__ == "__main__":
    main()
