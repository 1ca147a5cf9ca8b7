#!/usr/bin/env python3
"""PyTorch baseline for `whale train-bench`: the same model (MLA + DeepSeekMoE + mHC + MTP, the
equations of tests/golden/make_train_fixture.py, HF's DeepseekV4HyperConnection/HyperHead for mHC),
the same batch of random tokens, one training step = forward, backward (main + λ·MTP loss),
gradient clipping and AdamW. The MoE dispatches each expert only its routed tokens, as
transformers' DeepseekV3MoE does. Float32, eager mode, torch.set_num_threads(THREADS).

    python3 bench/train_speed_torch.py CONFIG.json BATCH SEQ STEPS THREADS
Prints one JSON line: median step seconds and tokens/s.
"""
import json
import statistics
import sys
import time
import types

import torch
import torch.nn.functional as F
from transformers.models.deepseek_v4.modeling_deepseek_v4 import DeepseekV4HyperConnection, DeepseekV4HyperHead

cfg_path, B, S, STEPS, THREADS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(THREADS)
torch.manual_seed(0)
c = json.load(open(cfg_path))
D, H, n = c["hidden_size"], c["num_attention_heads"], c.get("hc_mult", 0)
nope, rope_d, dv, r = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
E, K, L, V = c["n_routed_experts"], c["num_experts_per_tok"], c["num_hidden_layers"], c["vocab_size"]
qr, I, MI = c["q_lora_rank"], c["intermediate_size"], c["moe_intermediate_size"]
eps = c["rms_norm_eps"]
scale = (nope + rope_d) ** -0.5
hc_cfg = types.SimpleNamespace(hc_mult=n, hc_sinkhorn_iters=c.get("hc_sinkhorn_iters", 20), hc_eps=c.get("hc_eps", 1e-6),
                               rms_norm_eps=eps, hidden_size=D)

params = []


def init_hc(m):  # as whale's init_random: fn N(0, 0.02), base 0, scale 1
    with torch.no_grad():
        for name, t in m.named_parameters():
            if name.endswith("fn"):
                t.normal_(0, 0.02)
            elif name.endswith("base"):
                t.zero_()
            else:
                t.fill_(1.0)
    params.extend(m.parameters())
    return m


def P(*shape, std=0.02, ones=False):
    t = torch.nn.Parameter(torch.ones(*shape) if ones else torch.randn(*shape) * std)
    params.append(t)
    return t


def mlp_params(inter):
    return {"gate": P(inter, D), "up": P(inter, D), "down": P(D, inter)}


def layer_params(i):
    p = {"in_ln": P(D, ones=True), "post_ln": P(D, ones=True), "q_a": P(qr, D), "q_a_ln": P(qr, ones=True),
         "q_b": P(H * (nope + rope_d), qr), "kv_a": P(r + rope_d, D), "kv_a_ln": P(r, ones=True),
         "kv_b": P(H * (nope + dv), r), "o": P(D, H * dv)}
    if i >= c["first_k_dense_replace"]:
        p["router"] = P(E, D)
        p["bias"] = torch.zeros(E)
        p["experts"] = [mlp_params(MI) for _ in range(E)]
        p["shared"] = mlp_params(MI * c["n_shared_experts"]) if c["n_shared_experts"] else None
    else:
        p["mlp"] = mlp_params(I)
    if n:
        for site in ("hc_attn", "hc_ffn"):
            p[site] = init_hc(DeepseekV4HyperConnection(hc_cfg))
    return p


emb, lm_head, norm = P(V, D), P(V, D), P(D, ones=True)
layers = [layer_params(i) for i in range(L)]
head = init_hc(DeepseekV4HyperHead(hc_cfg)) if n else None
mtp = None
if c.get("num_nextn_predict_layers", 0):
    mtp = {"enorm": P(D, ones=True), "hnorm": P(D, ones=True), "eh": P(D, 2 * D), "block": layer_params(L),
           "norm": P(D, ones=True), "head": init_hc(DeepseekV4HyperHead(hc_cfg)) if n else None}

inv = 1.0 / (10000.0 ** (torch.arange(0, rope_d, 2).float() / rope_d))
ang = torch.arange(S).float()[:, None] * inv[None, :]
COS, SIN = ang.cos(), ang.sin()


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate(x, cos, sin):
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], -1).flatten(-2)


def mla(p, x):
    Bx, Sx, _ = x.shape
    q = (rms(x @ p["q_a"].T, p["q_a_ln"]) @ p["q_b"].T).view(Bx, Sx, H, nope + rope_d)
    ckv, kpe = (x @ p["kv_a"].T).split([r, rope_d], -1)
    ckv = rms(ckv, p["kv_a_ln"])
    kpe = rotate(kpe, COS[:Sx], SIN[:Sx])
    q = torch.cat([q[..., :nope], rotate(q[..., nope:], COS[:Sx, None, :], SIN[:Sx, None, :])], -1)
    kv = (ckv @ p["kv_b"].T).view(Bx, Sx, H, nope + dv)
    k = torch.cat([kv[..., :nope], kpe[:, :, None, :].expand(Bx, Sx, H, rope_d)], -1)
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), kv[..., nope:].transpose(1, 2),
                                       is_causal=True, scale=scale)
    return o.transpose(1, 2).reshape(Bx, Sx, H * dv) @ p["o"].T


def mlp(m, x):
    return (F.silu(x @ m["gate"].T) * (x @ m["up"].T)) @ m["down"].T


def moe(p, x):
    shape = x.shape
    flat = x.reshape(-1, D)
    s = (flat @ p["router"].T).sigmoid()
    idx = (s.detach() + p["bias"]).topk(K, -1).indices
    w = s.gather(-1, idx)
    w = w / (w.sum(-1, keepdim=True) + 1e-20) * c["routed_scaling_factor"]
    y = torch.zeros_like(flat)
    for e in range(E):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if tok.numel():
            y = y.index_add(0, tok, w[tok, slot, None] * mlp(p["experts"][e], flat[tok]))
    if p["shared"]:
        y = y + mlp(p["shared"], flat)
    return y.view(shape)


def layer(p, X):
    ffn = (lambda h: moe(p, h)) if "router" in p else (lambda h: mlp(p["mlp"], h))
    if not n:
        X = X + mla(p, rms(X, p["in_ln"]))
        return X + ffn(rms(X, p["post_ln"]))
    post, comb, y = p["hc_attn"](X)
    a = mla(p, rms(y, p["in_ln"]))
    X = post.unsqueeze(-1) * a.unsqueeze(-2) + torch.matmul(comb.transpose(-1, -2), X)
    post, comb, y = p["hc_ffn"](X)
    f = ffn(rms(y, p["post_ln"]))
    return post.unsqueeze(-1) * f.unsqueeze(-2) + torch.matmul(comb.transpose(-1, -2), X)


def stack(X, ls, hd, nw):
    if n:
        X = X.unsqueeze(2).expand(-1, -1, n, -1).contiguous()
    for p in ls:
        X = layer(p, X)
    if n:
        X = hd(X)
    return rms(X, nw)


def loss_fn(tokens):
    h = stack(emb[tokens], layers, head, norm)
    loss = F.cross_entropy((h[:, :-1] @ lm_head.T).reshape(-1, V), tokens[:, 1:].reshape(-1))
    if mtp:
        z = torch.cat([rms(emb[tokens[:, 1:]], mtp["enorm"]), rms(h[:, :-1], mtp["hnorm"])], -1) @ mtp["eh"].T
        hm = stack(z, [mtp["block"]], mtp["head"], mtp["norm"])
        loss = loss + 0.3 * F.cross_entropy((hm[:, :-1] @ lm_head.T).reshape(-1, V), tokens[:, 2:].reshape(-1))
    return loss


opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
tokens = torch.randint(0, V, (B, S))
times = []
for step in range(STEPS + 2):  # two warm-up steps
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = loss_fn(tokens)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if step >= 2:
        times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(json.dumps({"engine": "pytorch " + torch.__version__, "threads": THREADS, "batch": B, "seq": S,
                  "step_s": med, "tokens_per_s": B * S / med, "loss": float(loss.detach())}))
