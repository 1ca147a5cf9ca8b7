#!/usr/bin/env python3
"""Golden fixtures for the R2 architecture: mHC residual streams and MTP modules.

    pip install torch transformers safetensors
    python3 tests/golden/make_golden_r2.py

Reference model, built from Hugging Face's own modules (float32, CPU):
  * each decoder layer is transformers' DeepseekV3DecoderLayer (MLA + DeepSeekMoE), loaded by
    from_pretrained from a DeepseekV3 twin of the checkpoint;
  * the residual is wrapped exactly as transformers' DeepseekV4DecoderLayer does it, with its
    DeepseekV4HyperConnection (pre/post/comb, Sinkhorn) per site and DeepseekV4HyperHead;
  * an MTP module follows DeepSeek-V3's layout (enorm, hnorm, eh_proj with the embedding half
    first, a decoder block, shared_head) on the main model's final hidden states.
Writes tests/golden/<case>/ (checkpoint + expected.json with main and MTP logits) and
tests/golden/mhc_site.json (single-site weights from DeepseekV4HyperConnection).
"""
import json
import math
import os
import shutil
import sys
import tempfile
import types

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from transformers.models.deepseek_v4.modeling_deepseek_v4 import DeepseekV4HyperConnection, DeepseekV4HyperHead

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as base  # noqa: E402  (shapes, random weights, checkpoint writer)

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(2)

R2 = dict(base.CASES["v3"], architectures=["DeepseekR2ForCausalLM"], model_type="deepseek_r2",
          hc_mult=4, hc_sinkhorn_iters=20, hc_eps=1e-6, num_nextn_predict_layers=1)
CASES = {
    "r2": R2,                                             # mHC with 4 streams + one MTP module
    "r2_hc1": dict(R2, hc_mult=1, num_nextn_predict_layers=0, hc_sinkhorn_iters=3),  # a single stream
    "v3_mtp": dict(base.CASES["v3"], num_nextn_predict_layers=1),                   # plain residual + MTP
}


def hc_config(c):
    return types.SimpleNamespace(hc_mult=c["hc_mult"], hc_sinkhorn_iters=c["hc_sinkhorn_iters"], hc_eps=c["hc_eps"],
                                 rms_norm_eps=c["rms_norm_eps"], hidden_size=c["hidden_size"])


def extra_shapes(c):
    """mHC and MTP tensors on top of the V3 checkpoint layout."""
    D, L = c["hidden_size"], c["num_hidden_layers"]
    shapes = {}
    n = c.get("hc_mult", 0)

    def hyper(p):
        shapes[p + "_fn"] = ((2 + n) * n, n * D)
        shapes[p + "_base"] = ((2 + n) * n,)
        shapes[p + "_scale"] = (3,)

    def head(p):
        shapes[p + "_fn"] = (n, n * D)
        shapes[p + "_base"] = (n,)
        shapes[p + "_scale"] = (1,)

    layers = list(range(L + c.get("num_nextn_predict_layers", 0)))
    if n:
        for l in layers:
            hyper(f"model.layers.{l}.hc_attn")
            hyper(f"model.layers.{l}.hc_ffn")
        head("model.hc_head")
    for k in range(c.get("num_nextn_predict_layers", 0)):
        p = f"model.layers.{L + k}"
        shapes[p + ".enorm.weight"] = (D,)
        shapes[p + ".hnorm.weight"] = (D,)
        shapes[p + ".eh_proj.weight"] = (D, 2 * D)
        shapes[p + ".shared_head.norm.weight"] = (D,)
        if n:
            head(p + ".hc_head")
    return shapes


def layer_shapes(c, index):
    """The decoder-layer tensors of layer `index` (used for the MTP block)."""
    one = dict(c, num_hidden_layers=index + 1, tie_word_embeddings=True)
    return {k: v for k, v in base.param_shapes(one).items() if k.startswith(f"model.layers.{index}.")}


def random_extras(c, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    shapes = extra_shapes(c)
    for k in range(c.get("num_nextn_predict_layers", 0)):
        shapes.update(layer_shapes(c, c["num_hidden_layers"] + k))
    for name, shape in shapes.items():
        if name.endswith("_fn"):
            t = 0.5 * torch.randn(shape, generator=g) / math.sqrt(shape[1])
        elif name.endswith("_base"):
            t = 0.5 * torch.randn(shape, generator=g)
        elif name.endswith("_scale"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("e_score_correction_bias"):
            t = 0.3 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 1.0 + 0.2 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[name] = t.float()
    return out


class Reference(torch.nn.Module):
    def __init__(self, c, v3, weights):
        super().__init__()
        self.c, self.v3 = c, v3
        n = c.get("hc_mult", 0)
        self.n = n
        L = c["num_hidden_layers"]

        def hc_site(p):
            m = DeepseekV4HyperConnection(hc_config(c))
            m.fn.data, m.base.data, m.scale.data = weights[p + "_fn"], weights[p + "_base"], weights[p + "_scale"]
            return m

        def hc_head(p):
            m = DeepseekV4HyperHead(hc_config(c))
            m.hc_fn.data, m.hc_base.data, m.hc_scale.data = weights[p + "_fn"], weights[p + "_base"], weights[p + "_scale"]
            return m

        if n:
            self.attn_hc = [hc_site(f"model.layers.{l}.hc_attn") for l in range(L)]
            self.ffn_hc = [hc_site(f"model.layers.{l}.hc_ffn") for l in range(L)]
            self.hc_head = hc_head("model.hc_head")
        self.mtp = []
        for k in range(c.get("num_nextn_predict_layers", 0)):
            p = f"model.layers.{L + k}"
            m = types.SimpleNamespace(enorm=weights[p + ".enorm.weight"], hnorm=weights[p + ".hnorm.weight"],
                                      eh_proj=weights[p + ".eh_proj.weight"],
                                      norm=weights[p + ".shared_head.norm.weight"], block=self.mtp_block(L + k, weights))
            if n:
                m.attn_hc, m.ffn_hc, m.hc_head = hc_site(p + ".hc_attn"), hc_site(p + ".hc_ffn"), hc_head(p + ".hc_head")
            self.mtp.append(m)

    def mtp_block(self, index, weights):
        """A DeepseekV3DecoderLayer for the MTP module, loaded through transformers' own loader."""
        one = dict({k: v for k, v in self.c.items() if k not in ("hc_mult", "hc_sinkhorn_iters", "hc_eps")},
                   architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3",
                   num_hidden_layers=1, first_k_dense_replace=0 if self.c["first_k_dense_replace"] <= index else 1,
                   num_nextn_predict_layers=0, tie_word_embeddings=True)
        tensors = {k.replace(f"model.layers.{index}.", "model.layers.0."): v for k, v in weights.items()
                   if k.startswith(f"model.layers.{index}.") and k in layer_shapes(self.c, index)}
        tensors["model.embed_tokens.weight"] = weights["model.embed_tokens.weight"]
        tensors["model.norm.weight"] = weights["model.norm.weight"]
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(one, f)
            base.write_checkpoint(d, tensors, 1)
            model, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager",
                                                               output_loading_info=True)
        if info["missing_keys"] or info["unexpected_keys"]:
            sys.exit(f"MTP block did not load cleanly: {info}")
        return model.model.layers[0].eval()

    @staticmethod
    def rms(x, w, eps):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def run_block(self, layer, attn_hc, ffn_hc, X, pos, mask):
        """One decoder layer on the residual X: [S, D] plain or [1, S, n, D] with mHC."""
        if not self.n:
            a, _ = layer.self_attn(layer.input_layernorm(X), position_embeddings=pos, attention_mask=mask)
            X = X + a
            return X + layer.mlp(layer.post_attention_layernorm(X))
        post, comb, collapsed = attn_hc(X)  # transformers' DeepseekV4DecoderLayer, verbatim wiring
        a, _ = layer.self_attn(layer.input_layernorm(collapsed), position_embeddings=pos, attention_mask=mask)
        X = post.unsqueeze(-1) * a.unsqueeze(-2) + torch.matmul(comb.transpose(-1, -2), X)
        post, comb, collapsed = ffn_hc(X)
        f = layer.mlp(layer.post_attention_layernorm(collapsed))
        return post.unsqueeze(-1) * f.unsqueeze(-2) + torch.matmul(comb.transpose(-1, -2), X)

    def stack(self, X, S, layers, attn_hc, ffn_hc, hc_head, norm):
        pos = self.v3.model.rotary_emb(X, torch.arange(S).unsqueeze(0))
        mask = torch.full((S, S), float("-inf")).triu(1)[None, None]
        if self.n:
            X = X.unsqueeze(2).expand(-1, -1, self.n, -1).contiguous()
        for i, layer in enumerate(layers):
            X = self.run_block(layer, attn_hc[i] if self.n else None, ffn_hc[i] if self.n else None, X, pos, mask)
        if self.n:
            X = hc_head(X)
        return self.rms(X, norm, self.c["rms_norm_eps"])

    @torch.no_grad()
    def forward(self, ids):
        S = len(ids)
        emb = self.v3.model.embed_tokens(torch.tensor([ids]))
        h = self.stack(emb, S, self.v3.model.layers, getattr(self, "attn_hc", None), getattr(self, "ffn_hc", None),
                       getattr(self, "hc_head", None), self.v3.model.norm.weight)
        logits = self.v3.lm_head(h)[0]
        mtp_logits = []
        for m in self.mtp:  # predicts token i+2 from hidden i and token i+1
            e = self.v3.model.embed_tokens(torch.tensor([ids[1:]]))
            eps = self.c["rms_norm_eps"]
            z = torch.cat([self.rms(e, m.enorm, eps), self.rms(h[:, :-1], m.hnorm, eps)], -1) @ m.eh_proj.T
            out = self.stack(z, S - 1, [m.block], [getattr(m, "attn_hc", None)], [getattr(m, "ffn_hc", None)],
                             getattr(m, "hc_head", None), m.norm)
            mtp_logits.append(self.v3.lm_head(out)[0])
        return logits, mtp_logits


def build(case, seed):
    c = CASES[case]
    out_dir = os.path.join(HERE, case)
    shutil.rmtree(out_dir, ignore_errors=True)
    weights = base.random_weights(c, seed)
    weights.update(random_extras(c, seed + 7))
    stored = {k: (v if (k.startswith("model.hc_head") or ".hc_" in k or k.endswith("e_score_correction_bias"))
                  else v.to(torch.bfloat16)) for k, v in weights.items()}
    weights = {k: v.to(torch.float32) for k, v in stored.items()}  # the reference sees the stored values
    base.write_checkpoint(out_dir, stored, 1)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)

    v3_config = {k: v for k, v in c.items() if k not in ("hc_mult", "hc_sinkhorn_iters", "hc_eps")}
    v3_config.update(architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", num_nextn_predict_layers=0)
    main = {k: v for k, v in weights.items() if k in base.param_shapes(v3_config)}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(v3_config, f)
        base.write_checkpoint(d, main, 1)
        v3, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager",
                                                        output_loading_info=True)
    if info["missing_keys"] or info["unexpected_keys"]:
        sys.exit(f"{case}: transformers did not load every weight: {info}")
    ref = Reference(c, v3.eval(), weights)

    g = torch.Generator().manual_seed(seed + 1)
    cases = []
    for n in (14, 6):
        ids = torch.randint(0, c["vocab_size"], (n,), generator=g).tolist()
        logits, mtp = ref(ids)
        entry = {"tokens": ids, "logits": [[float(f"{v:.7g}") for v in row] for row in logits.tolist()]}
        if mtp:
            entry["mtp_logits"] = [[float(f"{v:.7g}") for v in row] for row in mtp[0].tolist()]
        cases.append(entry)
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"source": "transformers " + __import__("transformers").__version__ +
                   " DeepseekV3DecoderLayer + DeepseekV4HyperConnection, float32", "cases": cases}, f,
                  separators=(",", ":"))
    print(f"{case}: {len(stored)} tensors")


def site_fixture():
    """DeepseekV4HyperConnection on random streams: pre-collapse input, post, comb, collapsed."""
    g = torch.Generator().manual_seed(5)
    out = []
    for n, D, iters in ((4, 16, 20), (2, 8, 5), (1, 4, 1), (6, 8, 20)):
        cfg = types.SimpleNamespace(hc_mult=n, hc_sinkhorn_iters=iters, hc_eps=1e-6, rms_norm_eps=1e-6, hidden_size=D)
        m = DeepseekV4HyperConnection(cfg)
        m.fn.data = torch.randn(m.fn.shape, generator=g) / math.sqrt(n * D)
        m.base.data = torch.randn(m.base.shape, generator=g)
        m.scale.data = 0.5 + torch.rand(3, generator=g)
        x = 2 * torch.randn(1, 1, n, D, generator=g)
        with torch.no_grad():
            post, comb, collapsed = m(x)
        out.append({"n": n, "dim": D, "iters": iters, "x": x.flatten().tolist(), "fn": m.fn.flatten().tolist(),
                    "base": m.base.tolist(), "scale": m.scale.tolist(), "post": post.flatten().tolist(),
                    "comb": comb.flatten().tolist(), "collapsed": collapsed.flatten().tolist()})
    with open(os.path.join(HERE, "mhc_site.json"), "w") as f:
        json.dump({"source": "transformers DeepseekV4HyperConnection", "sites": out}, f)


if __name__ == "__main__":
    site_fixture()
    for case in sys.argv[1:] or CASES:
        build(case, seed=3000 + 31 * list(CASES).index(case))
