#!/usr/bin/env python3
"""Pads a float32 whale/HF DeepSeek checkpoint's feed-forward layers with inert zeros.

Usage: bench/pad_model.py IN_DIR OUT_DIR [--intermediate N] [--moe-intermediate M] [--shared-experts S]

Every dense MLP and every expert gets zero rows in gate_proj/up_proj and zero columns in
down_proj up to the new sizes (dense: N; routed experts: M; the shared experts, one MLP of
M x S as in DeepSeek's checkpoints): silu(0) * 0 = 0 and the added products
are exact zeros, so the model computes what it computed before (same tokens, same MTP
drafts), but each decode step now reads as many weight bytes as a much larger model.
That turns the tiny trained default model into a memory-bound one on which MTP speculation
(whose acceptance comes from the real trained module) can be timed as it behaves on real
checkpoints: verifying k+1 tokens costs about one weight read.
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}; only float32 checkpoints are padded")
        a, b = info["data_offsets"]
        tensors[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(info["shape"])
    return tensors


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, t in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            f.write(np.ascontiguousarray(t).tobytes())


def pad(t, rows=None, cols=None):
    out = np.zeros((rows or t.shape[0], cols or t.shape[1]), dtype=np.float32)
    out[: t.shape[0], : t.shape[1]] = t
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--intermediate", type=int, default=0, help="dense MLP width")
    ap.add_argument("--moe-intermediate", type=int, default=0, help="width of each expert")
    ap.add_argument("--shared-experts", type=int, default=0, help="n_shared_experts (their MLP is M x S wide)")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.src, "config.json")))
    a.intermediate = a.intermediate or cfg["intermediate_size"]
    a.moe_intermediate = a.moe_intermediate or cfg["moe_intermediate_size"]
    a.shared_experts = a.shared_experts or cfg.get("n_shared_experts", 1)
    if (a.intermediate < cfg["intermediate_size"] or a.moe_intermediate < cfg["moe_intermediate_size"] or
            a.shared_experts < cfg.get("n_shared_experts", 1)):
        raise SystemExit("the new sizes must not be smaller than the model's")
    tensors = read_safetensors(os.path.join(a.src, "model.safetensors"))
    out = {}
    for name, t in tensors.items():
        if ".mlp." in name and name.endswith("_proj.weight"):
            shared = ".shared_experts." in name
            width = (a.moe_intermediate * a.shared_experts if shared else
                     a.moe_intermediate if ".experts." in name else a.intermediate)
            t = pad(t, cols=width) if "down_proj" in name else pad(t, rows=width)
        out[name] = t
    os.makedirs(a.dst, exist_ok=True)
    write_safetensors(os.path.join(a.dst, "model.safetensors"), out)
    cfg["intermediate_size"], cfg["moe_intermediate_size"] = a.intermediate, a.moe_intermediate
    cfg["n_shared_experts"] = a.shared_experts
    json.dump(cfg, open(os.path.join(a.dst, "config.json"), "w"), indent=2)
    for f in os.listdir(a.src):
        if f.startswith("tokenizer"):
            shutil.copy(os.path.join(a.src, f), a.dst)
    n = sum(t.size for t in out.values())
    print(f"{a.dst}: {n / 1e6:.0f}M parameters ({n * 4 / 2**20:.0f} MiB float32)")


if __name__ == "__main__":
    main()
