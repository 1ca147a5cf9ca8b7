#!/usr/bin/env python3
"""Reference for whale's trainer: loss, gradients and ten optimizer steps of the R2 golden model.

    pip install torch transformers safetensors
    python3 tests/golden/make_train_fixture.py

The model is written here in PyTorch from the equations (MLA with interleaved RoPE, DeepSeekMoE
with biased group-limited sigmoid routing, MTP), with Hugging Face's own DeepseekV4HyperConnection
/ DeepseekV4HyperHead modules for mHC and HF's DeepseekV3RotaryEmbedding for YaRN. Its forward
pass is first checked against tests/golden/r2/expected.json (transformers' DeepseekV3 layers).
Gradients come from autograd; the steps use torch.optim.AdamW and clip_grad_norm_.

Loss = CE(main) + lambda * CE(MTP) + alpha * balance, balance = sum over MoE layers of the mean
over sequences of sum_i f_i P_i (f_i = E/(K*S) * tokens routed to i, P_i = mean_t s_it / sum_j s_jt).
After each step the router bias moves by gamma * sign(mean load - load_i).

Writes tests/golden/train_r2.json: per tensor the gradient's sum, L2 norm and four entries; the
loss at each step; per tensor the parameters' sum and four entries after the steps.
"""
import glob
import json
import math
import os
import types

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RotaryEmbedding
from transformers.models.deepseek_v4.modeling_deepseek_v4 import DeepseekV4HyperConnection, DeepseekV4HyperHead

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = os.path.join(HERE, "r2")
torch.set_num_threads(2)

LAMBDA, ALPHA, GAMMA = 0.3, 0.01, 0.01
LR, MIN_LR, WARMUP, STEPS, CLIP = 1e-2, 1e-3, 3, 10, 1.0
# Adam's eps is 1e-6, not 1e-8: at the first mHC site of a stack all streams are copies of one
# vector, so the gradients of its comb and pre weights are zero in exact arithmetic and rounding
# noise (1e-9..1e-17) in practice; with eps 1e-8 Adam would amplify that noise into full steps
# whose signs no two implementations share.
BETAS, EPS, WD = (0.9, 0.95), 1e-6, 0.1

c = json.load(open(os.path.join(CASE, "config.json")))
W = {}
for f in sorted(glob.glob(os.path.join(CASE, "*.safetensors"))):
    W.update({k: v.float() for k, v in load_file(f).items()})
BIAS = {k: W.pop(k) for k in list(W) if k.endswith("e_score_correction_bias")}
for v in W.values():
    v.requires_grad_(True)

D, H, n = c["hidden_size"], c["num_attention_heads"], c.get("hc_mult", 0)
nope, rope_d, dv, r = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
E, K, L = c["n_routed_experts"], c["num_experts_per_tok"], c["num_hidden_layers"]
eps = c["rms_norm_eps"]

v3 = {k: v for k, v in c.items() if k not in ("hc_mult", "hc_sinkhorn_iters", "hc_eps")}
v3.update(model_type="deepseek_v3")
rotary = DeepseekV3RotaryEmbedding(DeepseekV3Config(**v3))
scale = (nope + rope_d) ** -0.5
rs = c.get("rope_scaling")
if rs and rs.get("mscale_all_dim"):
    m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0
    scale *= m * m

hc_cfg = types.SimpleNamespace(hc_mult=n, hc_sinkhorn_iters=c.get("hc_sinkhorn_iters"), hc_eps=c.get("hc_eps"),
                               rms_norm_eps=eps, hidden_size=D)
SITES = {}


def hc_site(p):
    if p not in SITES:
        m = DeepseekV4HyperConnection(hc_cfg)
        m.fn, m.base, m.scale = (torch.nn.Parameter(W[p + s]) for s in ("_fn", "_base", "_scale"))
        for s, t in (("_fn", m.fn), ("_base", m.base), ("_scale", m.scale)):
            W[p + s] = t
        SITES[p] = m
    return SITES[p]


def hc_head(p):
    if p not in SITES:
        m = DeepseekV4HyperHead(hc_cfg)
        m.hc_fn, m.hc_base, m.hc_scale = (torch.nn.Parameter(W[p + s]) for s in ("_fn", "_base", "_scale"))
        for s, t in (("_fn", m.hc_fn), ("_base", m.hc_base), ("_scale", m.hc_scale)):
            W[p + s] = t
        SITES[p] = m
    return SITES[p]


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate(x, cos, sin):  # interleaved pairs; x [..., S, (H,) rope], cos/sin broadcastable [.., pairs]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], -1).flatten(-2)


def mla(p, x, cos, sin):
    B, S, _ = x.shape
    a = p + ".self_attn"
    if c["q_lora_rank"]:
        q = rms(x @ W[a + ".q_a_proj.weight"].T, W[a + ".q_a_layernorm.weight"]) @ W[a + ".q_b_proj.weight"].T
    else:
        q = x @ W[a + ".q_proj.weight"].T
    q = q.view(B, S, H, nope + rope_d)
    kva = x @ W[a + ".kv_a_proj_with_mqa.weight"].T
    ckv, kpe = kva.split([r, rope_d], -1)
    ckv = rms(ckv, W[a + ".kv_a_layernorm.weight"])
    kpe = rotate(kpe, cos, sin)                                           # [B, S, rope]
    q = torch.cat([q[..., :nope], rotate(q[..., nope:], cos[:, None, :], sin[:, None, :])], -1)
    kv = (ckv @ W[a + ".kv_b_proj.weight"].T).view(B, S, H, nope + dv)
    k = torch.cat([kv[..., :nope], kpe[:, :, None, :].expand(B, S, H, rope_d)], -1)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    s = s.masked_fill(torch.ones(S, S, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.einsum("bhij,bjhd->bihd", s.softmax(-1), kv[..., nope:]).reshape(B, S, H * dv)
    return o @ W[a + ".o_proj.weight"].T


def mlp(p, x):
    return (F.silu(x @ W[p + ".gate_proj.weight"].T) * (x @ W[p + ".up_proj.weight"].T)) @ W[p + ".down_proj.weight"].T


def moe(p, x, stats):
    B, S, _ = x.shape
    logits = x @ W[p + ".mlp.gate.weight"].T
    s = logits.sigmoid() if c["scoring_func"] == "sigmoid" else logits.softmax(-1)
    choice = s.detach() + BIAS[p + ".mlp.gate.e_score_correction_bias"]
    G = c["n_group"]
    if G > 1:
        gs = choice.view(B, S, G, E // G).topk(2, -1).values.sum(-1)
        keep = torch.zeros_like(gs).scatter(-1, gs.topk(c["topk_group"], -1).indices, 1.0)
        choice = choice.masked_fill(keep.repeat_interleave(E // G, -1) == 0, float("-inf"))
    idx = choice.topk(K, -1).indices
    w = s.gather(-1, idx)
    if c["norm_topk_prob"]:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    w = w * c["routed_scaling_factor"]
    outs = torch.stack([mlp(f"{p}.mlp.experts.{e}", x) for e in range(E)], 2)  # [B, S, E, D]
    y = (w.unsqueeze(-1) * outs.gather(2, idx.unsqueeze(-1).expand(B, S, K, D))).sum(2)
    if c["n_shared_experts"]:
        y = y + mlp(p + ".mlp.shared_experts", x)
    counts = torch.zeros(B, E).scatter_add(1, idx.reshape(B, S * K), torch.ones(B, S * K))
    f = counts * E / (K * S)
    P = (s / s.sum(-1, keepdim=True)).mean(1)
    stats["balance"] = stats["balance"] + (f * P).sum(-1).mean()
    stats["load"].append(counts.sum(0))
    return y


def layer(i, X, cos, sin, stats):
    p = f"model.layers.{i}"
    ffn = (lambda h: moe(p, h, stats)) if i >= c["first_k_dense_replace"] else (lambda h: mlp(p + ".mlp", h))
    if not n:
        X = X + mla(p, rms(X, W[p + ".input_layernorm.weight"]), cos, sin)
        return X + ffn(rms(X, W[p + ".post_attention_layernorm.weight"]))
    post, comb, y = hc_site(p + ".hc_attn")(X)
    a = mla(p, rms(y, W[p + ".input_layernorm.weight"]), cos, sin)
    X = post.unsqueeze(-1) * a.unsqueeze(-2) + torch.matmul(comb.transpose(-1, -2), X)
    post, comb, y = hc_site(p + ".hc_ffn")(X)
    f = ffn(rms(y, W[p + ".post_attention_layernorm.weight"]))
    return post.unsqueeze(-1) * f.unsqueeze(-2) + torch.matmul(comb.transpose(-1, -2), X)


def stack(X, layers, head, norm, stats):
    B, S, _ = X.shape
    cos, sin = rotary(X, torch.arange(S).unsqueeze(0))
    cos, sin = cos[0, :, : rope_d // 2], sin[0, :, : rope_d // 2]        # per pair
    if n:
        X = X.unsqueeze(2).expand(-1, -1, n, -1).contiguous()
    for i in layers:
        X = layer(i, X, cos, sin, stats)
    if n:
        X = hc_head(head)(X)
    return rms(X, W[norm])


def forward(tokens):
    stats = {"balance": torch.zeros(()), "load": []}
    emb = W["model.embed_tokens.weight"]
    h = stack(emb[tokens], range(L), "model.hc_head", "model.norm.weight", stats)
    logits = h @ W["lm_head.weight"].T
    p = f"model.layers.{L}"
    z = torch.cat([rms(emb[tokens[:, 1:]], W[p + ".enorm.weight"]), rms(h[:, :-1], W[p + ".hnorm.weight"])], -1)
    hm = stack(z @ W[p + ".eh_proj.weight"].T, [L], p + ".hc_head", p + ".shared_head.norm.weight", stats)
    return logits, hm @ W["lm_head.weight"].T, stats


def check_against_hf_golden():
    golden = json.load(open(os.path.join(CASE, "expected.json")))
    worst = 0.0
    with torch.no_grad():
        for case in golden["cases"]:
            logits, mtp, _ = forward(torch.tensor([case["tokens"]]))
            for got, want in ((logits[0], case["logits"]), (mtp[0], case["mtp_logits"])):
                want = torch.tensor(want)
                worst = max(worst, float((got - want).abs().max() / want.abs().max()))
    assert worst < 1e-4, f"reference disagrees with the HF golden logits: {worst}"
    return worst


def loss_fn(tokens, weight):
    logits, mtp, stats = forward(tokens)
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None])[..., 0]
    main = -(weight[:, 1:] * lp).sum() / weight[:, 1:].sum()
    lpm = torch.log_softmax(mtp[:, :-1], -1).gather(-1, tokens[:, 2:, None])[..., 0]
    mtp_loss = -(weight[:, 2:] * lpm).sum() / weight[:, 2:].sum()
    return main + LAMBDA * mtp_loss + ALPHA * stats["balance"], (main, mtp_loss, stats)


def stats_of(t):
    flat = t.detach().flatten()
    picks = sorted({0, flat.numel() // 3, 2 * flat.numel() // 3, flat.numel() - 1})
    return {"sum": float(flat.double().sum()), "norm": float(flat.double().norm()),
            "at": picks, "values": [float(flat[i]) for i in picks]}


def lr_at(step):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    progress = min(1.0, (step - WARMUP) / max(1, STEPS - WARMUP))
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * progress))


def main():
    worst = check_against_hf_golden()
    g = torch.Generator().manual_seed(17)
    B, S = 2, 12
    tokens = torch.randint(0, c["vocab_size"], (B, S), generator=g)
    weight = torch.ones(B, S)
    weight[:, 0] = 0
    weight[0, 4] = 0
    weight[1, 7] = 0
    loss, (main_loss, mtp_loss, stats) = loss_fn(tokens, weight)
    loss.backward()
    grads = {k: stats_of(v.grad) for k, v in W.items()}
    first = {k: float(v.detach()) for k, v in
             (("loss", loss), ("main", main_loss), ("mtp", mtp_loss), ("balance", stats["balance"]))}

    for v in W.values():
        v.grad = None
    decay = [v for k, v in W.items() if v.dim() == 2]
    no_decay = [v for k, v in W.items() if v.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS, foreach=False)
    losses, norms = [], []
    for step in range(STEPS):
        opt.zero_grad()
        loss, (_, _, st) = loss_fn(tokens, weight)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(W.values()), CLIP)))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.step()
        losses.append(float(loss.detach()))
        moe_layers = [f"model.layers.{i}" for i in range(L + 1) if i >= c["first_k_dense_replace"]]
        with torch.no_grad():
            for p, load in zip(moe_layers, st["load"]):
                b = BIAS[p + ".mlp.gate.e_score_correction_bias"]
                b += GAMMA * torch.sign(load.mean() - load)
    params = {k: stats_of(v) for k, v in W.items()}
    params.update({k: stats_of(v) for k, v in BIAS.items()})
    out = {"source": f"PyTorch {torch.__version__} autograd + torch.optim.AdamW; forward within {worst:.1e} of the HF golden",
           "tokens": tokens.tolist(), "weight": weight.tolist(),
           "lambda": LAMBDA, "alpha": ALPHA, "gamma": GAMMA, "lr": LR, "min_lr": MIN_LR, "warmup": WARMUP,
           "steps": STEPS, "clip": CLIP, "betas": list(BETAS), "eps": EPS, "weight_decay": WD,
           "first": first, "grads": grads, "losses": losses, "grad_norms": norms, "params": params}
    with open(os.path.join(HERE, "train_r2.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"loss {first['loss']:.6f}, forward vs HF {worst:.2e}, {len(grads)} gradients, losses {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
