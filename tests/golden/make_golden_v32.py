#!/usr/bin/env python3
"""Golden checkpoints for DeepSeek-V3.2 (DeepseekV32ForCausalLM: V3 + DeepSeek Sparse Attention).

Each case is a tiny random checkpoint in the real layout (config.json, safetensors; BF16 or FP8
e4m3 with 128x128 `weight_scale_inv`, the indexer's `wq_b`/`wk` FP8 and `weights_proj` BF16, as
in the released files) and two references from Hugging Face `transformers` (float32, CPU, eager):

  expected.json           plain transformers: whale's float numerics (--numerics float)
  expected_official.json  transformers with the roundings DeepSeek's official inference code
                          applies in the graph, whale's default (--numerics official):
                          1. the MLA latent c_kv (after kv_a_layernorm) is rounded to FP8 e4m3
                             with one power-of-two (ue8m0) scale per 128 values;
                          2. the indexer's queries and keys, after RoPE, are rotated by the
                             orthonormal Hadamard transform and rounded the same way (one scale
                             per head: index_head_dim <= 128).
                          Blocks shorter than 128 (tiny dims) take one scale for what is there.
                          bf16 rounding of activations is not simulated (whale runs float32).

Both files hold the logits of every position of a few sequences (shorter and longer than
index_topk) and, for the first sequence, the residual stream after every layer.

The official roundings are discontinuous, so the sequences are drawn such that the official
reference is stable: computed in float64 too, it agrees with float32 to 1e-4 (relative);
otherwise they are redrawn (make_golden_v4.py explains why).

    pip install torch transformers==5.23.0 safetensors
    python3 tests/golden/make_golden_v32.py          # rewrites tests/golden/v32*/
"""
import json
import math
import os
import shutil
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM
from transformers.models.deepseek_v32 import modeling_deepseek_v32 as v32

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402  (shared: random weights, FP8 tiles, checkpoint writer)

HERE = mg.HERE

BASE = dict(mg.BASE_V3, architectures=["DeepseekV32ForCausalLM"], model_type="deepseek_v32")
CASES = {
    # BF16, three layers (one dense), YaRN, 16 index heads of 32 dims, top-8 selection: the first
    # sequence (40 tokens) crosses index_topk early, the last (6) never does.
    "v32": dict(BASE, vocab_size=320, hidden_size=64, intermediate_size=96, moe_intermediate_size=16,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=24,
                kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=24,
                n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
                topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
                routed_scaling_factor=2.5, first_k_dense_replace=1,
                max_position_embeddings=163840, rope_scaling=mg.yarn(40, 4096, 1.0, 1.0),
                index_n_heads=16, index_head_dim=32, index_topk=8, tie_word_embeddings=False),
    # FP8 weights with ue8m0 scales as released, index_head_dim 128 (the real Hadamard and FP8
    # block size), kv_lora_rank 160 (a full and a partial latent block), top-16.
    "v32_fp8": dict(BASE, vocab_size=300, hidden_size=160, intermediate_size=200, moe_intermediate_size=72,
                    num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, q_lora_rank=144,
                    kv_lora_rank=160, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
                    n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
                    topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
                    routed_scaling_factor=2.5, first_k_dense_replace=1,
                    max_position_embeddings=163840, rope_scaling=mg.yarn(40, 4096, 1.0, 1.0),
                    index_n_heads=16, index_head_dim=128, index_topk=16, tie_word_embeddings=False,
                    quantization_config={"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                         "weight_block_size": [128, 128], "scale_fmt": "ue8m0"}),
}
STORAGE = {"v32": "bf16", "v32_fp8": "fp8"}
SEQ_LENGTHS = {"v32": [40, 9, 6], "v32_fp8": [30, 12]}


def param_shapes(c):
    shapes = mg.param_shapes(c)
    nh, hd = c["index_n_heads"], c["index_head_dim"]
    for l in range(c["num_hidden_layers"]):
        x = f"model.layers.{l}.self_attn.indexer."
        shapes[x + "wq_b.weight"] = (nh * hd, c["q_lora_rank"])
        shapes[x + "wk.weight"] = (hd, c["hidden_size"])
        shapes[x + "k_norm.weight"] = (hd,)
        shapes[x + "k_norm.bias"] = (hd,)
        shapes[x + "weights_proj.weight"] = (nh, c["hidden_size"])
    return shapes


def random_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(c).items():
        if name.endswith("e_score_correction_bias"):
            t = 0.3 * torch.randn(shape, generator=g)
        elif name.endswith("k_norm.bias"):
            t = 0.2 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 1.0 + 0.2 * torch.randn(shape, generator=g)
        elif "embed_tokens" in name:
            t = torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[name] = t.float()
    return out


# --- the official code's roundings, added to transformers for expected_official.json ---------


def official_indexer_forward(self, hidden_states, q_resid, position_embeddings, attention_mask, position_ids,
                             past_key_values=None):
    """DeepseekV32Indexer.forward with the official Hadamard + FP8 steps on q and k."""
    B, S, _ = hidden_states.shape
    cos, sin = position_embeddings
    q = self.wq_b(q_resid).view(B, S, self.n_heads, self.head_dim)
    q_rot, q_pass = torch.split(q, [self.qk_rope_head_dim, self.head_dim - self.qk_rope_head_dim], dim=-1)
    k = self.k_norm(self.wk(hidden_states)).unsqueeze(2)
    k_rot, k_pass = torch.split(k, [self.qk_rope_head_dim, self.head_dim - self.qk_rope_head_dim], dim=-1)
    q_rot, k_rot = v32.apply_rotary_pos_emb(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
    q = mg.fp8_round_blocks(mg.hadamard(torch.cat([q_rot, q_pass], dim=-1)))
    k = mg.fp8_round_blocks(mg.hadamard(torch.cat([k_rot, k_pass], dim=-1).squeeze(2)))
    scores = torch.relu(torch.matmul(q.float(), k.transpose(-1, -2).float().unsqueeze(1)) * self.softmax_scale)
    weights = self.weights_proj(hidden_states).float() * (self.n_heads ** -0.5)
    index_scores = torch.matmul(weights.unsqueeze(-2), scores).squeeze(-2)
    index_scores = index_scores + attention_mask if attention_mask.dtype != torch.bool else \
        index_scores.masked_fill(~attention_mask, float("-inf"))
    topk = min(self.index_topk, index_scores.shape[-1])
    return index_scores.topk(topk, dim=-1).indices.to(torch.int32)


def reference(ref_dir, sequences, official, dtype=torch.float32):
    model, info = AutoModelForCausalLM.from_pretrained(ref_dir, dtype=dtype, attn_implementation="eager",
                                                       experts_implementation="eager", output_loading_info=True)
    missing = [k for k in info["missing_keys"] if "rotary" not in k]
    if missing or info["unexpected_keys"] or info.get("mismatched_keys"):
        sys.exit(f"{ref_dir}: transformers did not load every weight: {info}")
    assert type(model).__name__ == "DeepseekV32ForCausalLM", type(model)
    model.eval()
    hooks = []
    if official:
        for layer in model.model.layers:
            hooks.append(layer.self_attn.kv_a_layernorm.register_forward_hook(lambda m, i, o: mg.fp8_round_blocks(o)))
        saved = v32.DeepseekV32Indexer.forward
        v32.DeepseekV32Indexer.forward = official_indexer_forward
    layer_out = []
    for layer in model.model.layers:
        hooks.append(layer.register_forward_hook(
            lambda m, i, o: layer_out.append((o[0] if isinstance(o, tuple) else o)[0].clone())))
    cases = []
    try:
        with torch.no_grad():
            for k, seq in enumerate(sequences):
                layer_out.clear()
                logits = model(torch.tensor([seq])).logits[0]
                case = {"tokens": seq, "logits": [[float(f"{v:.7g}") for v in row] for row in logits.tolist()]}
                if k == 0:
                    case["layers"] = [[[float(f"{v:.7g}") for v in row] for row in h.tolist()] for h in layer_out]
                cases.append(case)
    finally:
        for h in hooks:
            h.remove()
        if official:
            v32.DeepseekV32Indexer.forward = saved
    return cases


def is_fp8_candidate(name, t):
    return mg.is_fp8_candidate(name, t) and not name.endswith("weights_proj.weight")


def build(case, seed):
    config = CASES[case]
    out_dir = os.path.join(HERE, case)
    shutil.rmtree(out_dir, ignore_errors=True)
    weights = random_weights(config, seed)
    stored, ref = {}, {}
    for name, w in weights.items():
        if STORAGE[case] == "fp8" and is_fp8_candidate(name, w):
            q, scale, deq = mg.quantize_fp8(w, True)
            stored[name], stored[name + "_scale_inv"], ref[name] = q, scale, deq
        elif name.endswith("e_score_correction_bias") or name.endswith(("k_norm.weight", "k_norm.bias")):
            stored[name] = ref[name] = w  # F32 in the released checkpoints
        else:
            stored[name] = w.to(torch.bfloat16)
            ref[name] = stored[name].to(torch.float32)
    mg.write_checkpoint(out_dir, stored, 1)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with tempfile.TemporaryDirectory() as ref_dir:
        with open(os.path.join(ref_dir, "config.json"), "w") as f:
            json.dump({k: v for k, v in config.items() if k != "quantization_config"}, f)
        mg.write_checkpoint(ref_dir, ref, 1)
        sequences, attempt = mg.stable_sequences(case, config["vocab_size"], SEQ_LENGTHS[case], seed,
                                                 lambda seqs, dtype: reference(ref_dir, seqs, True, dtype))
        for official, fname in ((False, "expected.json"), (True, "expected_official.json")):
            cases = reference(ref_dir, sequences, official)
            source = "transformers " + __import__("transformers").__version__ + ", float32, eager, sequences of attempt " + str(attempt)
            if official:
                source += ", with the official FP8 latent and Hadamard+FP8 indexer roundings"
            with open(os.path.join(out_dir, fname), "w") as f:
                json.dump({"source": source, "cases": cases}, f, separators=(",", ":"))
    print(f"{case}: {len(stored)} tensors, sequences {SEQ_LENGTHS[case]}")


if __name__ == "__main__":
    for case in sys.argv[1:] or CASES:
        build(case, seed=5000 + 31 * list(CASES).index(case))
