#!/usr/bin/env python3
"""Block-format fixtures from llama.cpp's own gguf-py (PyPI `gguf`): random raw Q8_0, Q4_0, Q5_0,
Q4_K, Q6_K and MXFP4 blocks and their values as gguf.quants.dequantize computes them, plus F32
rows and their Q8_0, Q4_0, Q5_0 and MXFP4 quantizations by gguf.quants.quantize (the same bytes
as ggml's quantize_row_*_ref). Writes tests/golden/quant_blocks.json. (MXFP4 is drawn after the
others, so adding it left their fixtures unchanged.)

    pip install gguf numpy
    python3 tests/golden/make_quant_fixtures.py
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(1234)
out = {"source": "gguf-py quants.dequantize / quants.quantize", "blocks": [], "quantize": []}
for qtype, nbytes in ((Q.Q8_0, 34), (Q.Q4_K, 144), (Q.Q6_K, 210), (Q.Q4_0, 18), (Q.Q5_0, 22)):
    for _ in range(6):
        raw = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
        # Keep the f16 scales finite and moderate: d (and dmin) at the documented offsets.
        d = np.array([rng.uniform(-0.05, 0.05)], dtype=np.float16).view(np.uint8)
        if qtype in (Q.Q8_0, Q.Q4_0, Q.Q5_0):
            raw[0:2] = d
        elif qtype == Q.Q4_K:
            raw[0:2] = np.array([abs(rng.uniform(0.001, 0.05))], dtype=np.float16).view(np.uint8)
            raw[2:4] = np.array([abs(rng.uniform(0.001, 0.05))], dtype=np.float16).view(np.uint8)
        else:
            raw[208:210] = d
        values = quants.dequantize(raw.reshape(1, -1), qtype).reshape(-1)
        out["blocks"].append({"type": qtype.name, "bytes": raw.tolist(), "values": [float(v) for v in values]})
for qtype in (Q.Q8_0, Q.Q4_0, Q.Q5_0):
    x = rng.standard_normal((2, 64)).astype(np.float32)
    q = quants.quantize(x, qtype)
    out["quantize"].append({"type": qtype.name, "x": x.reshape(-1).tolist(), "bytes": q.reshape(-1).tolist()})
for _ in range(6):  # MXFP4: any e (0 and 1 give subnormal scales), any nibbles
    raw = rng.integers(0, 256, size=17, dtype=np.uint8)
    raw[0] = rng.choice([0, 1, 2, 100, 127, 130, 140])
    values = quants.dequantize(raw.reshape(1, -1), Q.MXFP4).reshape(-1)
    out["blocks"].append({"type": "MXFP4", "bytes": raw.tolist(), "values": [float(v) for v in values]})
x = rng.standard_normal((2, 64)).astype(np.float32)
x[1, :32] *= 1e-3
x[1, 32:] = 0  # an all-zero block: e = 0
q = quants.quantize(x, Q.MXFP4)
out["quantize"].append({"type": "MXFP4", "x": x.reshape(-1).tolist(), "bytes": q.reshape(-1).tolist()})
with open(os.path.join(HERE, "quant_blocks.json"), "w") as f:
    json.dump(out, f)
print(len(out["blocks"]), "blocks")
