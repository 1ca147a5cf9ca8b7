#!/usr/bin/env python3
"""Golden checkpoints for DeepSeek-V4 (DeepseekV4ForCausalLM).

Each case is a tiny random checkpoint in the released layout (config.json with
`compress_ratios`, tensors named as DeepSeek ships them: embed.weight, layers.N.attn.wq_a.weight,
layers.N.ffn.experts.E.w1.weight, hc_head_fn, ...; BF16 with the F32 / I64 tensors the released
files keep in F32 / I64) and `expected.json`: logits from Hugging Face `transformers`
DeepseekV4ForCausalLM (float32, CPU, eager), which loads that layout through its conversion
mapping, for every position of a few sequences, and the residual streams after every layer
for the first sequence. This is whale's float numerics (--numerics float).

    pip install torch transformers==5.23.0 safetensors
    python3 tests/golden/make_golden_v4.py          # rewrites tests/golden/v4*/
"""
import json
import math
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(2)

BASE = {"architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "hidden_act": "silu",
        "rms_norm_eps": 1e-6, "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": False,
        "max_position_embeddings": 1024, "rope_theta": 10000.0, "compress_rope_theta": 160000.0,
        "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 64,
                         "beta_fast": 32, "beta_slow": 1},
        "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "scoring_func": "sqrtsoftplus",
        "norm_topk_prob": True, "routed_scaling_factor": 1.5, "num_nextn_predict_layers": 0}

CASES = {
    # Every layer type (sliding, CSA at rate 4, HCA at rate 8: transformers' layer_types and
    # compress_rates), a window of 8, top-4 of the CSA entries, two hash-routed layers then
    # score-routed ones, a SwiGLU clamp that engages.
    "v4": dict(BASE, vocab_size=320, hidden_size=64, num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=1,
               head_dim=32, qk_rope_head_dim=8, q_lora_rank=24, o_groups=2, o_lora_rank=16, sliding_window=8,
               layer_types=["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
                            "compressed_sparse_attention", "heavily_compressed_attention"],
               compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
               index_n_heads=16, index_head_dim=16, index_topk=4, n_routed_experts=8, n_shared_experts=1,
               num_experts_per_tok=2, moe_intermediate_size=16, num_hash_layers=2, swiglu_limit=1.0),
}
SEQ_LENGTHS = {"v4": [40, 11, 5]}


def kind_of(c, l):
    if "layer_types" in c:
        return {"sliding_attention": "sliding", "compressed_sparse_attention": "csa",
                "heavily_compressed_attention": "hca"}[c["layer_types"][l]]
    return {0: "sliding", 4: "csa", 128: "hca"}[c["compress_ratios"][l]]


def ratio_of(c, l):
    rates = c.get("compress_rates", {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128})
    return {"sliding": 0, "csa": rates["compressed_sparse_attention"], "hca": rates["heavily_compressed_attention"]}[kind_of(c, l)]


def shapes(c):
    D, H, hd, ql = c["hidden_size"], c["num_attention_heads"], c["head_dim"], c["q_lora_rank"]
    G, R, n = c["o_groups"], c["o_lora_rank"], c["hc_mult"]
    ih, ihd, E, I = c["index_n_heads"], c["index_head_dim"], c["n_routed_experts"], c["moe_intermediate_size"]
    out = {"embed.weight": (c["vocab_size"], D), "head.weight": (c["vocab_size"], D), "norm.weight": (D,),
           "hc_head_fn": (n, n * D), "hc_head_base": (n,), "hc_head_scale": (1,)}
    for l in range(c["num_hidden_layers"]):
        p = f"layers.{l}."
        out.update({p + "attn_norm.weight": (D,), p + "ffn_norm.weight": (D,)})
        for site in ("attn", "ffn"):
            out.update({f"{p}hc_{site}_fn": ((2 + n) * n, n * D), f"{p}hc_{site}_base": ((2 + n) * n,),
                        f"{p}hc_{site}_scale": (3,)})
        a = p + "attn."
        out.update({a + "wq_a.weight": (ql, D), a + "q_norm.weight": (ql,), a + "wq_b.weight": (H * hd, ql),
                    a + "wkv.weight": (hd, D), a + "kv_norm.weight": (hd,), a + "wo_a.weight": (G * R, H * hd // G),
                    a + "wo_b.weight": (D, G * R), a + "attn_sink": (H,)})
        ratio = ratio_of(c, l)
        if ratio:
            m, coff = ratio, (2 if kind_of(c, l) == "csa" else 1)
            out.update({a + "compressor.wkv.weight": (coff * hd, D), a + "compressor.wgate.weight": (coff * hd, D),
                        a + "compressor.ape": (m, coff * hd), a + "compressor.norm.weight": (hd,)})
            if coff == 2:
                x = a + "indexer."
                out.update({x + "wq_b.weight": (ih * ihd, ql), x + "weights_proj.weight": (ih, D),
                            x + "compressor.wkv.weight": (2 * ihd, D), x + "compressor.wgate.weight": (2 * ihd, D),
                            x + "compressor.ape": (m, 2 * ihd), x + "compressor.norm.weight": (ihd,)})
        f = p + "ffn."
        out[f + "gate.weight"] = (E, D)
        if l < c["num_hash_layers"]:
            out[f + "gate.tid2eid"] = (c["vocab_size"], c["num_experts_per_tok"])
        else:
            out[f + "gate.bias"] = (E,)
        for e in range(E):
            out.update({f"{f}experts.{e}.w1.weight": (I, D), f"{f}experts.{e}.w3.weight": (I, D),
                        f"{f}experts.{e}.w2.weight": (D, I)})
        S = I * c["n_shared_experts"]
        out.update({f + "shared_experts.w1.weight": (S, D), f + "shared_experts.w3.weight": (S, D),
                    f + "shared_experts.w2.weight": (D, S)})
    return out


FP32 = ("_fn", "_base", "_scale", "attn_sink", ".ape", "gate.bias")  # kept in F32 in the released files


def random_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes(c).items():
        if name.endswith("tid2eid"):  # distinct experts per token
            t = torch.stack([torch.randperm(c["n_routed_experts"], generator=g)[:shape[1]] for _ in range(shape[0])])
            out[name] = t.long()
            continue
        if name.endswith("_fn"):
            t = 0.5 * torch.randn(shape, generator=g) / math.sqrt(shape[1])
        elif name.endswith("_base"):
            t = 0.5 * torch.randn(shape, generator=g)
        elif name.endswith("_scale"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("attn_sink"):
            t = torch.randn(shape, generator=g)
        elif name.endswith(".ape"):
            t = 0.5 * torch.randn(shape, generator=g)
        elif name.endswith("gate.bias"):
            t = 0.3 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 1.0 + 0.2 * torch.randn(shape, generator=g)
        elif name.startswith("embed"):
            t = torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[name] = t.float() if (name.endswith(FP32) or ".scale" in name) else t.to(torch.bfloat16)
    return out


def reference(ref_dir, sequences):
    model, info = AutoModelForCausalLM.from_pretrained(ref_dir, dtype=torch.float32, attn_implementation="eager",
                                                       output_loading_info=True)
    missing = [k for k in info["missing_keys"] if "rotary" not in k]
    if missing or info["unexpected_keys"] or info.get("mismatched_keys"):
        sys.exit(f"{ref_dir}: transformers did not load every weight: {info}")
    assert type(model).__name__ == "DeepseekV4ForCausalLM", type(model)
    model.eval()
    layer_out = []
    hooks = [layer.register_forward_hook(lambda m, i, o: layer_out.append((o[0] if isinstance(o, tuple) else o)[0].clone()))
             for layer in model.model.layers]
    cases = []
    with torch.no_grad():
        for k, seq in enumerate(sequences):
            layer_out.clear()
            logits = model(torch.tensor([seq])).logits[0]
            case = {"tokens": seq, "logits": [[float(f"{v:.7g}") for v in row] for row in logits.tolist()]}
            if k == 0:  # [layer][position][hc_mult · hidden]
                case["layers"] = [[[float(f"{v:.7g}") for v in row.flatten().tolist()] for row in h] for h in layer_out]
            cases.append(case)
    for h in hooks:
        h.remove()
    return cases


def build(case, seed):
    config = CASES[case]
    out_dir = os.path.join(HERE, case)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    weights = random_weights(config, seed)
    save_file({k: v.contiguous() for k, v in sorted(weights.items())}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    g = torch.Generator().manual_seed(seed + 1)
    sequences = [torch.randint(0, config["vocab_size"], (n,), generator=g).tolist() for n in SEQ_LENGTHS[case]]
    with tempfile.TemporaryDirectory() as ref_dir:
        shutil.copy(os.path.join(out_dir, "config.json"), ref_dir)
        ref = {k: (v if v.dtype == torch.long else v.float()) for k, v in weights.items()}
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(ref_dir, "model.safetensors"),
                  metadata={"format": "pt"})
        cases = reference(ref_dir, sequences)
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"source": "transformers " + __import__("transformers").__version__ + ", float32, eager",
                   "cases": cases}, f, separators=(",", ":"))
    print(f"{case}: {len(weights)} tensors, sequences {SEQ_LENGTHS[case]}")


if __name__ == "__main__":
    for case in sys.argv[1:] or CASES:
        build(case, seed=7000 + 13 * list(CASES).index(case))
