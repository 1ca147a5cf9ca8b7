#!/usr/bin/env python3
"""Golden checkpoints for DeepSeek-V4 (DeepseekV4ForCausalLM).

Each case is a tiny random checkpoint in the released layout (config.json with
`compress_ratios`, tensors named as DeepSeek ships them: embed.weight, layers.N.attn.wq_a.weight,
layers.N.ffn.experts.E.w1.weight, hc_head_fn, ...; BF16 with the F32 / I64 tensors the released
files keep in F32 / I64) and `expected.json`: logits from Hugging Face `transformers`
DeepseekV4ForCausalLM (float32, CPU, eager), which loads that layout through its conversion
mapping, for every position of a few sequences, and the residual streams after every layer
for the first sequence. This is whale's float numerics (--numerics float).

`expected_official.json`: the same with the roundings DeepSeek's official V4 inference code
applies in the graph (whale's default, --numerics official), added to transformers by hooks:
  1. the sliding-window kv and every compressed entry: their non-RoPE dims rounded to FP8 e4m3,
     one power-of-two scale per 64 values (RoPE touches only the last dims, so rounding before
     or after it is the same);
  2. the indexer's queries and keys, after RoPE: the orthonormal Hadamard transform, then FP4
     e2m1 (nearest, ties to even) with one power-of-two scale per 32 values,
     s = 2^ceil(log2(max(amax, 6·2^-126) / 6)).
bf16 rounding of activations is not simulated (whale runs float32).

These roundings are discontinuous: two correct float32 implementations that sum in different
orders can round a value that sits within float noise of a rounding boundary differently, and
one flipped FP4 index key can change a top-k choice. The sequences are therefore drawn so that
the official reference is stable: computed in float64 as well, it must agree with the float32
one to 1e-4 (relative); sequences that fail are redrawn (the attempt number is recorded).

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402  (shared: FP8 rounding, Hadamard, stable sequences)

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
    # The released layout in full: compress_ratios 0 / 4 / 128 (the MTP block's 0 last),
    # qk_rope_head_dim, num_hash_layers, rope_scaling; FP8 e4m3 projections with F8_E8M0 `.scale`
    # per 128x128 (partial edge blocks), FP4 e2m1 routed experts (I8, two per byte) with an
    # F8_E8M0 scale per 32. The first sequence crosses an HCA window of 128.
    "v4_fp8": dict(BASE, vocab_size=300, hidden_size=160, num_hidden_layers=5, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=64, qk_rope_head_dim=16, q_lora_rank=144, o_groups=2,
                   o_lora_rank=48, sliding_window=16, compress_ratios=[0, 4, 128, 4, 0, 0],
                   index_n_heads=16, index_head_dim=32, index_topk=8, n_routed_experts=8, n_shared_experts=1,
                   num_experts_per_tok=2, moe_intermediate_size=64, num_hash_layers=1, swiglu_limit=2.0,
                   quantization_config={"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                        "weight_block_size": [128, 128], "scale_fmt": "ue8m0"},
                   expert_dtype="fp4"),
}
# The v4 shape with the MTP module (mtp.0.*, which transformers ignores): the main model's logits
# are checked against transformers, the module by speculation giving plain decoding's tokens.
CASES["v4_mtp"] = dict(CASES["v4"], num_nextn_predict_layers=1)
SEQ_LENGTHS = {"v4": [40, 11, 5], "v4_fp8": [136, 12], "v4_mtp": [24, 9]}
WITH_LAYERS = {"v4"}  # residual streams per layer (v4_fp8's would be megabytes)

# FP8 in the released V4 checkpoints; routed experts are FP4 when expert_dtype says so.
FP8_NAMES = ("attn.wq_a.weight", "attn.wq_b.weight", "attn.wkv.weight", "attn.wo_a.weight", "attn.wo_b.weight",
             "shared_experts.w1.weight", "shared_experts.w2.weight", "shared_experts.w3.weight", "indexer.wq_b.weight")


def quantize_fp8_e8m0(w):
    """e4m3 per 128x128 tile with a power-of-two scale stored as F8_E8M0; (q, scale, dequantized)."""
    rows, cols = w.shape
    br, bc = math.ceil(rows / 128), math.ceil(cols / 128)
    padded = torch.zeros(br * 128, bc * 128)
    padded[:rows, :cols] = w
    amax = padded.view(br, 128, bc, 128).abs().amax(dim=(1, 3)).clamp(min=1e-4)
    scale = torch.pow(2.0, torch.ceil(torch.log2(amax / 448.0)))
    expanded = scale.repeat_interleave(128, 0).repeat_interleave(128, 1)[:rows, :cols]
    q = (w / expanded).to(torch.float8_e4m3fn)
    return q, scale.to(torch.float8_e8m0fnu), q.float() * expanded


def quantize_fp4(w):
    """e2m1 with a power-of-two scale per 32 values of a row: (I8 packed, F8_E8M0 scale, dequantized)."""
    rows, cols = w.shape
    blocks = w.view(rows, cols // 32, 32)
    amax = blocks.abs().amax(dim=-1, keepdim=True).clamp(min=6.0 * 2.0 ** -126)
    scale = torch.pow(2.0, torch.ceil(torch.log2(amax / 6.0)))
    deq = fp4_round_blocks(w)  # same rounding, scale per 32
    mag = (deq.view(rows, cols // 32, 32).abs() / scale).view(rows, cols)
    code = torch.zeros(rows, cols, dtype=torch.uint8)
    for k, level in enumerate(FP4_LEVELS.tolist()):
        code[mag == level] = k
    code |= (deq < 0).to(torch.uint8) << 3
    packed = (code[:, 0::2] | (code[:, 1::2] << 4)).to(torch.int8)
    return packed, scale.view(rows, cols // 32).to(torch.float8_e8m0fnu), deq


def kind_of(c, l):
    if "layer_types" in c:
        return {"sliding_attention": "sliding", "compressed_sparse_attention": "csa",
                "heavily_compressed_attention": "hca"}[c["layer_types"][l]]
    return {0: "sliding", 4: "csa", 128: "hca"}[c["compress_ratios"][l]]


def ratio_of(c, l):
    rates = c.get("compress_rates", {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128})
    return {"sliding": 0, "csa": rates["compressed_sparse_attention"], "hca": rates["heavily_compressed_attention"]}[kind_of(c, l)]


def layer_shapes(c, p, kind, hash_routed):
    """One block's tensors under prefix p ("layers.N." or the MTP module's "mtp.0.")."""
    D, H, hd, ql = c["hidden_size"], c["num_attention_heads"], c["head_dim"], c["q_lora_rank"]
    G, R, n = c["o_groups"], c["o_lora_rank"], c["hc_mult"]
    ih, ihd, E, I = c["index_n_heads"], c["index_head_dim"], c["n_routed_experts"], c["moe_intermediate_size"]
    out = {p + "attn_norm.weight": (D,), p + "ffn_norm.weight": (D,)}
    for site in ("attn", "ffn"):
        out.update({f"{p}hc_{site}_fn": ((2 + n) * n, n * D), f"{p}hc_{site}_base": ((2 + n) * n,),
                    f"{p}hc_{site}_scale": (3,)})
    a = p + "attn."
    out.update({a + "wq_a.weight": (ql, D), a + "q_norm.weight": (ql,), a + "wq_b.weight": (H * hd, ql),
                a + "wkv.weight": (hd, D), a + "kv_norm.weight": (hd,), a + "wo_a.weight": (G * R, H * hd // G),
                a + "wo_b.weight": (D, G * R), a + "attn_sink": (H,)})
    rates = c.get("compress_rates", {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128})
    m = {"sliding": 0, "csa": rates["compressed_sparse_attention"], "hca": rates["heavily_compressed_attention"]}[kind]
    if m:
        coff = 2 if kind == "csa" else 1
        out.update({a + "compressor.wkv.weight": (coff * hd, D), a + "compressor.wgate.weight": (coff * hd, D),
                    a + "compressor.ape": (m, coff * hd), a + "compressor.norm.weight": (hd,)})
        if kind == "csa":
            x = a + "indexer."
            out.update({x + "wq_b.weight": (ih * ihd, ql), x + "weights_proj.weight": (ih, D),
                        x + "compressor.wkv.weight": (2 * ihd, D), x + "compressor.wgate.weight": (2 * ihd, D),
                        x + "compressor.ape": (m, 2 * ihd), x + "compressor.norm.weight": (ihd,)})
    f = p + "ffn."
    out[f + "gate.weight"] = (E, D)
    if hash_routed:
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


def shapes(c):
    D, n = c["hidden_size"], c["hc_mult"]
    out = {"embed.weight": (c["vocab_size"], D), "head.weight": (c["vocab_size"], D), "norm.weight": (D,),
           "hc_head_fn": (n, n * D), "hc_head_base": (n,), "hc_head_scale": (1,)}
    for l in range(c["num_hidden_layers"]):
        out.update(layer_shapes(c, f"layers.{l}.", kind_of(c, l), l < c["num_hash_layers"]))
    for k in range(c.get("num_nextn_predict_layers", 0)):  # V4-REF's MTPBlock: sliding attention, score routing
        p = f"mtp.{k}."
        out.update({p + "e_proj.weight": (D, D), p + "h_proj.weight": (D, D), p + "enorm.weight": (D,),
                    p + "hnorm.weight": (D,), p + "norm.weight": (D,), p + "hc_head_fn": (n, n * D),
                    p + "hc_head_base": (n,), p + "hc_head_scale": (1,)})
        out.update(layer_shapes(c, p, "sliding", False))
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


FP4_LEVELS = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def fp4_round_blocks(x, block=32):
    out = x.clone()
    for b0 in range(0, x.shape[-1], block):
        xb = x[..., b0:b0 + block]
        amax = xb.abs().amax(dim=-1, keepdim=True).clamp(min=6.0 * 2.0 ** -126)
        s = torch.pow(2.0, torch.ceil(torch.log2(amax / 6.0)))
        a = (xb.abs() / s).clamp(max=6.0)
        d = (a.unsqueeze(-1) - FP4_LEVELS).abs()  # [..., block, 8]
        best = d.min(dim=-1, keepdim=True).values
        # nearest level, ties to the even code (the lower index among equals that is even)
        cand = (d == best) & (torch.arange(8) % 2 == 0)
        idx = torch.where(cand.any(-1), cand.float().argmax(-1), d.argmin(-1))
        out[..., b0:b0 + block] = torch.sign(xb) * FP4_LEVELS[idx] * s
    return out



def official_hooks(model, rope_dim):
    """The official code's roundings, as hooks on transformers' modules (see the docstring)."""
    hooks = []

    def nope_fp8(module, inputs, out):
        head = out[..., :out.shape[-1] - rope_dim]
        return torch.cat([mg.fp8_round_blocks(head, 64), out[..., out.shape[-1] - rope_dim:]], dim=-1)

    def indexer_fp4(module, args):
        q, keys, hidden = args
        return fp4_round_blocks(mg.hadamard(q)), fp4_round_blocks(mg.hadamard(keys)), hidden

    for layer in model.model.layers:
        attn = layer.self_attn
        hooks.append(attn.kv_norm.register_forward_hook(nope_fp8))
        if attn.compressor is not None:
            hooks.append(attn.compressor.kv_norm.register_forward_hook(nope_fp8))
            if hasattr(attn.compressor, "indexer"):
                hooks.append(attn.compressor.indexer.scorer.register_forward_pre_hook(indexer_fp4))
    return hooks


def reference(ref_dir, sequences, official=False, with_layers=True, dtype=torch.float32):
    model, info = AutoModelForCausalLM.from_pretrained(ref_dir, dtype=dtype, attn_implementation="eager",
                                                       experts_implementation="eager",
                                                       output_loading_info=True)
    missing = [k for k in info["missing_keys"] if "rotary" not in k]
    if missing or info["unexpected_keys"] or info.get("mismatched_keys"):
        sys.exit(f"{ref_dir}: transformers did not load every weight: {info}")
    assert type(model).__name__ == "DeepseekV4ForCausalLM", type(model)
    model.eval()
    layer_out = []
    hooks = official_hooks(model, model.config.qk_rope_head_dim) if official else []
    hooks += [layer.register_forward_hook(lambda m, i, o: layer_out.append((o[0] if isinstance(o, tuple) else o)[0].clone()))
             for layer in model.model.layers]
    cases = []
    with torch.no_grad():
        for k, seq in enumerate(sequences):
            layer_out.clear()
            logits = model(torch.tensor([seq])).logits[0]
            case = {"tokens": seq, "logits": [[float(f"{v:.7g}") for v in row] for row in logits.tolist()]}
            if k == 0 and with_layers:  # [layer][position][hc_mult · hidden]
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
    stored, ref = {}, {}
    for name, w in weights.items():
        if "quantization_config" in config and name.endswith(FP8_NAMES):
            q, scale, deq = quantize_fp8_e8m0(w.float())
            stored[name], stored[name[:-len(".weight")] + ".scale"], ref[name] = q, scale, deq
        elif config.get("expert_dtype") == "fp4" and ".experts." in name:
            q, scale, deq = quantize_fp4(w.float())
            stored[name], stored[name[:-len(".weight")] + ".scale"], ref[name] = q, scale, deq
        else:
            stored[name], ref[name] = w, (w if w.dtype == torch.long else w.float())
    save_file({k: v.contiguous() for k, v in sorted(stored.items())}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with tempfile.TemporaryDirectory() as ref_dir:  # transformers gets the dequantized values in float32
        with open(os.path.join(ref_dir, "config.json"), "w") as f:
            json.dump({k: v for k, v in config.items() if k not in ("quantization_config", "expert_dtype")}, f)
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(ref_dir, "model.safetensors"),
                  metadata={"format": "pt"})
        sequences, attempt = mg.stable_sequences(case, config["vocab_size"], SEQ_LENGTHS[case], seed,
                                                 lambda seqs, dtype: reference(ref_dir, seqs, True, False, dtype))
        for official, fname in ((False, "expected.json"), (True, "expected_official.json")):
            cases = reference(ref_dir, sequences, official, case in WITH_LAYERS)
            source = "transformers " + __import__("transformers").__version__ + ", float32, eager, sequences of attempt " + str(attempt)
            if official:
                source += ", with the official FP8 kv / entry and Hadamard + FP4 indexer roundings"
            with open(os.path.join(out_dir, fname), "w") as f:
                json.dump({"source": source, "cases": cases}, f, separators=(",", ":"))
    print(f"{case}: {len(stored)} tensors, sequences {SEQ_LENGTHS[case]}")


if __name__ == "__main__":
    for case in sys.argv[1:] or CASES:
        build(case, seed=7000 + 13 * list(CASES).index(case))
