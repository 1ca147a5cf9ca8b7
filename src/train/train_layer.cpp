// One decoder layer of the training model, forward and backward:
//   mHC site (or plain residual) -> RMSNorm -> MLA -> site out -> site -> RMSNorm -> MLP/MoE -> site out
// The math of each piece is in grad_ops.h / mhc_grad.h; this file is the wiring and the
// bookkeeping of which activation feeds which gradient.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/swiglu.h"
#include "model/rope.h"
#include "model/router.h"
#include "train/acts.h"
#include "train/grad_ops.h"
#include "train/mhc_grad.h"
#include "train/train_model.h"

namespace whale::train {

namespace {

using Vec = std::vector<float>;

void zeros(Vec& v, size_t n) { v.assign(n, 0.0f); }

struct Ctx {
  const ModelConfig& c;
  ThreadPool& pool;
  int64_t n, D;  // streams, hidden
  HyperDims dims() const { return {n, float(c.hc_eps), int(c.hc_sinkhorn_iters), false}; }
};

// --- mHC site (or the plain residual) ---------------------------------------------------

// y [N, D] = the sublayer input collapsed from the streams x [N, n·D].
void site_in(const Ctx& k, const HyperP& H, const Vec& x, int64_t N, SiteActs& s, Vec& y) {
  const int64_t n = k.n, D = k.D;
  if (H.empty()) {
    y.assign(x.begin(), x.begin() + N * D);
    return;
  }
  const HyperDims d = k.dims();
  const int64_t rows = d.rows();
  s.xn.resize(static_cast<size_t>(N * n * D));
  s.inv.resize(static_cast<size_t>(N));
  rmsnorm_forward(x.data(), nullptr, N, n * D, float(k.c.rms_norm_eps), s.xn.data(), s.inv.data(), k.pool);
  s.mix.resize(static_cast<size_t>(N * rows));
  linear_forward(H.fn.w, rows, n * D, s.xn.data(), N, s.mix.data(), k.pool);
  s.pre.resize(static_cast<size_t>(N * n));
  s.post.resize(static_cast<size_t>(N * n));
  s.comb.resize(static_cast<size_t>(N * n * n));
  y.assign(static_cast<size_t>(N * D), 0.0f);
  k.pool.parallel_for(N, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      hc_weights_forward(d, &s.mix[size_t(t * rows)], H.base.w, H.scale.w, &s.pre[size_t(t * n)], &s.post[size_t(t * n)],
                         &s.comb[size_t(t * n * n)]);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t e = 0; e < D; ++e) y[size_t(t * D + e)] += s.pre[size_t(t * n + i)] * x[size_t((t * n + i) * D + e)];
    }
  });
}

// out [N, n·D]: x + f, or out_j = post_j·f + Σ_i comb_ij·x_i.
void site_out(const Ctx& k, const HyperP& H, const Vec& x, const SiteActs& s, const Vec& f, int64_t N, float* out) {
  const int64_t n = k.n, D = k.D;
  if (H.empty()) {
    for (int64_t i = 0; i < N * D; ++i) out[i] = x[size_t(i)] + f[size_t(i)];
    return;
  }
  k.pool.parallel_for(N, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t j = 0; j < n; ++j) {
        float* o = out + (t * n + j) * D;
        for (int64_t e = 0; e < D; ++e) o[e] = s.post[size_t(t * n + j)] * f[size_t(t * D + e)];
        for (int64_t i = 0; i < n; ++i) {
          const float cij = s.comb[size_t((t * n + i) * n + j)];
          const float* xi = &x[size_t((t * n + i) * D)];
          for (int64_t e = 0; e < D; ++e) o[e] += cij * xi[e];
        }
      }
  });
}

// Backward of site_out: df [N, D], dx [N, n·D] +=, dpost [N, n], dcomb [N, n, n].
void site_out_backward(const Ctx& k, const HyperP& H, const Vec& x, const SiteActs& s, const Vec& f, const float* dout,
                       int64_t N, Vec& df, float* dx, Vec& dpost, Vec& dcomb) {
  const int64_t n = k.n, D = k.D;
  df.assign(static_cast<size_t>(N * D), 0.0f);
  if (H.empty()) {
    for (int64_t i = 0; i < N * D; ++i) {
      df[size_t(i)] = dout[i];
      dx[size_t(i)] += dout[i];
    }
    return;
  }
  dpost.assign(static_cast<size_t>(N * n), 0.0f);
  dcomb.assign(static_cast<size_t>(N * n * n), 0.0f);
  k.pool.parallel_for(N, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t j = 0; j < n; ++j) {
        const float* dj = dout + (t * n + j) * D;
        const float pj = s.post[size_t(t * n + j)];
        float dp = 0;
        for (int64_t e = 0; e < D; ++e) {
          df[size_t(t * D + e)] += pj * dj[e];
          dp += dj[e] * f[size_t(t * D + e)];
        }
        dpost[size_t(t * n + j)] = dp;
        for (int64_t i = 0; i < n; ++i) {
          const float* xi = &x[size_t((t * n + i) * D)];
          float* dxi = &dx[size_t((t * n + i) * D)];
          const float cij = s.comb[size_t((t * n + i) * n + j)];
          float dc = 0;
          for (int64_t e = 0; e < D; ++e) {
            dc += xi[e] * dj[e];
            dxi[e] += cij * dj[e];
          }
          dcomb[size_t((t * n + i) * n + j)] = dc;
        }
      }
  });
}

// Backward of site_in (and of the site's weights): dx [N, n·D] += from dy [N, D], dpost, dcomb.
void site_in_backward(const Ctx& k, const HyperP& H, const Vec& x, const SiteActs& s, const Vec& dy, const Vec& dpost,
                      const Vec& dcomb, int64_t N, float* dx) {
  const int64_t n = k.n, D = k.D;
  if (H.empty()) {
    for (int64_t i = 0; i < N * D; ++i) dx[size_t(i)] += dy[size_t(i)];
    return;
  }
  const HyperDims d = k.dims();
  const int64_t rows = d.rows();
  Vec da(static_cast<size_t>(N * rows));
  k.pool.parallel_for(N, [&](int64_t t0, int64_t t1) {
    Vec dpre(static_cast<size_t>(n));
    for (int64_t t = t0; t < t1; ++t) {
      const float* dyt = &dy[size_t(t * D)];
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = &x[size_t((t * n + i) * D)];
        float* dxi = &dx[size_t((t * n + i) * D)];
        const float pi = s.pre[size_t(t * n + i)];
        float acc = 0;
        for (int64_t e = 0; e < D; ++e) {
          acc += dyt[e] * xi[e];
          dxi[e] += pi * dyt[e];
        }
        dpre[size_t(i)] = acc;
      }
      hc_weights_backward(d, &s.mix[size_t(t * rows)], H.base.w, H.scale.w, dpre.data(), &dpost[size_t(t * n)],
                          &dcomb[size_t(t * n * n)], &da[size_t(t * rows)]);
    }
  });
  Vec dmix(static_cast<size_t>(N * rows)), dxn(static_cast<size_t>(N * n * D), 0.0f);
  hc_reduce_grads(d, s.mix.data(), da.data(), H.scale.w, N, dmix.data(), H.base.g, H.scale.g);
  linear_backward(H.fn.w, rows, n * D, s.xn.data(), dmix.data(), N, dxn.data(), H.fn.g, k.pool);
  rmsnorm_backward(x.data(), nullptr, s.inv.data(), dxn.data(), N, n * D, dx, nullptr, k.pool);
}

// --- SwiGLU MLP -------------------------------------------------------------------------

void mlp_forward(const Ctx& k, const MlpP& m, const float* x, int64_t M, FfnActs& a, float* out) {
  const int64_t I = m.gate.out;
  a.g.resize(static_cast<size_t>(M * I));
  a.u.resize(static_cast<size_t>(M * I));
  a.h.resize(static_cast<size_t>(M * I));
  linear_forward(m.gate.w, I, k.D, x, M, a.g.data(), k.pool);
  linear_forward(m.up.w, I, k.D, x, M, a.u.data(), k.pool);
  whale::swiglu_forward(a.g.data(), a.u.data(), M * I, a.h.data(), k.pool);
  linear_forward(m.down.w, k.D, I, a.h.data(), M, out, k.pool);
}

void mlp_backward(const Ctx& k, const MlpP& m, const float* x, int64_t M, const FfnActs& a, const float* dout, float* dx) {
  const int64_t I = m.gate.out;
  Vec dh(static_cast<size_t>(M * I), 0.0f), dg(static_cast<size_t>(M * I), 0.0f), du(static_cast<size_t>(M * I), 0.0f);
  linear_backward(m.down.w, k.D, I, a.h.data(), dout, M, dh.data(), m.down.g, k.pool);
  whale::swiglu_backward(a.g.data(), a.u.data(), dh.data(), M * I, dg.data(), du.data(), k.pool);
  linear_backward(m.gate.w, I, k.D, x, dg.data(), M, dx, m.gate.g, k.pool);
  linear_backward(m.up.w, I, k.D, x, du.data(), M, dx, m.up.g, k.pool);
}

// --- DeepSeekMoE --------------------------------------------------------------------------

// The balance loss of one layer: mean over sequences of Σ_i f_i P_i, with
// f_i = E/(K·S) · (tokens of the sequence routed to i), P_i = mean_t s_it / Σ_j s_jt.
double balance_loss(const ModelConfig& c, const LayerActs& a, int64_t B, int64_t S) {
  const int64_t E = c.n_routed_experts, K = c.num_experts_per_tok;
  double total = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> f(static_cast<size_t>(E), 0.0), P(static_cast<size_t>(E), 0.0);
    for (int64_t t = b * S; t < (b + 1) * S; ++t) {
      for (int64_t j = 0; j < K; ++j) f[size_t(a.idx[size_t(t * K + j)])] += 1.0;
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += a.scores[size_t(t * E + e)];
      for (int64_t e = 0; e < E; ++e) P[size_t(e)] += a.scores[size_t(t * E + e)] / sum;
    }
    for (int64_t e = 0; e < E; ++e) total += (double(E) / double(K * S)) * f[size_t(e)] * (P[size_t(e)] / double(S));
  }
  return total / double(B);
}

void moe_forward(const Ctx& k, const LayerP& L, const float* x, int64_t N, LayerActs& a, std::vector<int64_t>* load) {
  const ModelConfig& c = k.c;
  const int64_t D = k.D, E = c.n_routed_experts, K = c.num_experts_per_tok;
  Vec logits(static_cast<size_t>(N * E));
  linear_forward(L.router.w, E, D, x, N, logits.data(), k.pool);
  a.scores.resize(static_cast<size_t>(N * E));
  a.idx.resize(static_cast<size_t>(N * K));
  a.w.resize(static_cast<size_t>(N * K));
  const Router router(c, L.bias);
  k.pool.parallel_for(N, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* l = &logits[size_t(t * E)];
      float* s = &a.scores[size_t(t * E)];
      router.route(l, &a.idx[size_t(t * K)], &a.w[size_t(t * K)]);
      if (c.scoring_func == ScoringFunc::Sigmoid) {
        for (int64_t e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + std::exp(-l[e]));
      } else {
        const float mx = *std::max_element(l, l + E);
        double sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += (s[e] = std::exp(l[e] - mx));
        for (int64_t e = 0; e < E; ++e) s[e] = float(s[e] / sum);
      }
    }
  });
  a.routed.assign(static_cast<size_t>(E), {});
  for (int64_t i = 0; i < N * K; ++i) a.routed[size_t(a.idx[size_t(i)])].push_back(i);
  if (load)
    for (int64_t e = 0; e < E; ++e) (*load)[size_t(e)] += int64_t(a.routed[size_t(e)].size());

  a.expert.resize(static_cast<size_t>(E));
  a.expert_out.assign(static_cast<size_t>(N * K * D), 0.0f);
  Vec xe, oe;
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& entries = a.routed[size_t(e)];
    const int64_t ne = int64_t(entries.size());
    if (ne == 0) continue;
    xe.resize(static_cast<size_t>(ne * D));
    oe.resize(static_cast<size_t>(ne * D));
    for (int64_t i = 0; i < ne; ++i) std::memcpy(&xe[size_t(i * D)], x + entries[size_t(i)] / K * D, size_t(D) * 4);
    mlp_forward(k, L.experts[size_t(e)], xe.data(), ne, a.expert[size_t(e)], oe.data());
    for (int64_t i = 0; i < ne; ++i)
      std::memcpy(&a.expert_out[size_t(entries[size_t(i)] * D)], &oe[size_t(i * D)], size_t(D) * 4);
  }
  a.out_f.assign(static_cast<size_t>(N * D), 0.0f);
  for (int64_t t = 0; t < N; ++t)  // ascending expert order per token, as the inference model
    for (int64_t j = 0; j < K; ++j) {
      const float wj = a.w[size_t(t * K + j)];
      const float* o = &a.expert_out[size_t((t * K + j) * D)];
      for (int64_t e = 0; e < D; ++e) a.out_f[size_t(t * D + e)] += wj * o[e];
    }
  if (L.has_shared) {
    Vec so(static_cast<size_t>(N * D));
    mlp_forward(k, L.shared, x, N, a.shared, so.data());
    for (int64_t i = 0; i < N * D; ++i) a.out_f[size_t(i)] += so[size_t(i)];
  }
}

void moe_backward(const Ctx& k, const LayerP& L, const float* x, int64_t B, int64_t S, const LayerActs& a,
                  const Vec& dout, float balance_weight, float* dx) {
  const ModelConfig& c = k.c;
  const int64_t N = B * S, D = k.D, E = c.n_routed_experts, K = c.num_experts_per_tok;
  if (L.has_shared) mlp_backward(k, L.shared, x, N, a.shared, dout.data(), dx);

  // Experts: d expert_out = w · dout; dw = dout · expert_out.
  Vec dw(static_cast<size_t>(N * K)), xe, doe, dxe;
  for (int64_t i = 0; i < N * K; ++i) {
    const float* d = &dout[size_t(i / K * D)];
    const float* o = &a.expert_out[size_t(i * D)];
    float acc = 0;
    for (int64_t e = 0; e < D; ++e) acc += d[e] * o[e];
    dw[size_t(i)] = acc;
  }
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& entries = a.routed[size_t(e)];
    const int64_t ne = int64_t(entries.size());
    if (ne == 0) continue;
    xe.resize(static_cast<size_t>(ne * D));
    doe.resize(static_cast<size_t>(ne * D));
    dxe.assign(static_cast<size_t>(ne * D), 0.0f);
    for (int64_t i = 0; i < ne; ++i) {
      const int64_t entry = entries[size_t(i)], t = entry / K;
      std::memcpy(&xe[size_t(i * D)], x + t * D, size_t(D) * 4);
      for (int64_t j = 0; j < D; ++j) doe[size_t(i * D + j)] = a.w[size_t(entry)] * dout[size_t(t * D + j)];
    }
    mlp_backward(k, L.experts[size_t(e)], xe.data(), ne, a.expert[size_t(e)], doe.data(), dxe.data());
    for (int64_t i = 0; i < ne; ++i) {
      float* dxt = dx + entries[size_t(i)] / K * D;
      for (int64_t j = 0; j < D; ++j) dxt[j] += dxe[size_t(i * D + j)];
    }
  }

  // Routing weights -> affinities s -> router logits. Balance loss: d/ds' = w·f_i/(B·S).
  const float rsf = float(c.routed_scaling_factor);
  Vec dlogits(static_cast<size_t>(N * E), 0.0f);
  std::vector<double> f(static_cast<size_t>(E));
  for (int64_t b = 0; b < B; ++b) {
    std::fill(f.begin(), f.end(), 0.0);
    if (balance_weight != 0)
      for (int64_t t = b * S; t < (b + 1) * S; ++t)
        for (int64_t j = 0; j < K; ++j) f[size_t(a.idx[size_t(t * K + j)])] += double(E) / double(K * S);
    for (int64_t t = b * S; t < (b + 1) * S; ++t) {
      const float* s = &a.scores[size_t(t * E)];
      std::vector<float> ds(static_cast<size_t>(E), 0.0f);
      float sel = 0, wdot = 0;
      for (int64_t j = 0; j < K; ++j) {
        const float sj = s[a.idx[size_t(t * K + j)]];
        sel += sj;
        wdot += dw[size_t(t * K + j)] * sj;
      }
      for (int64_t j = 0; j < K; ++j) {
        const int32_t ex = a.idx[size_t(t * K + j)];
        const float g = dw[size_t(t * K + j)];
        ds[size_t(ex)] += c.norm_topk_prob ? rsf * (g / (sel + 1e-20f) - wdot / ((sel + 1e-20f) * (sel + 1e-20f))) : rsf * g;
      }
      if (balance_weight != 0) {  // s'_i = s_i / Σ s: ds_j += (g_j - Σ_i g_i s'_i) / Σ s
        double sum = 0, gs = 0;
        for (int64_t e = 0; e < E; ++e) sum += s[e];
        const double coef = double(balance_weight) / double(B * S);
        for (int64_t e = 0; e < E; ++e) gs += coef * f[size_t(e)] * s[e] / sum;
        for (int64_t e = 0; e < E; ++e) ds[size_t(e)] += float((coef * f[size_t(e)] - gs) / sum);
      }
      float* dl = &dlogits[size_t(t * E)];
      if (c.scoring_func == ScoringFunc::Sigmoid) {
        for (int64_t e = 0; e < E; ++e) dl[e] = ds[size_t(e)] * s[e] * (1.0f - s[e]);
      } else {
        float dotp = 0;
        for (int64_t e = 0; e < E; ++e) dotp += ds[size_t(e)] * s[e];
        for (int64_t e = 0; e < E; ++e) dl[e] = s[e] * (ds[size_t(e)] - dotp);
      }
    }
  }
  linear_backward(L.router.w, E, D, x, dlogits.data(), N, dx, L.router.g, k.pool);
}

// --- Multi-head Latent Attention --------------------------------------------------------

struct RopeTable {
  Vec cos, sin;  // [S, P]
  float scale;
  RopeTable(const ModelConfig& c, int64_t S) {
    const Rope rope(c);
    const int64_t P = rope.n_pairs();
    cos.resize(static_cast<size_t>(S * P));
    sin.resize(static_cast<size_t>(S * P));
    for (int64_t p = 0; p < S; ++p) rope.angles(p, &cos[size_t(p * P)], &sin[size_t(p * P)]);
    scale = rope.softmax_scale;
  }
};

// Keys of head h for sequence b: [S, qk] = [k_nope_h, k_pe].
void head_keys(const ModelConfig& c, const LayerActs& a, int64_t b, int64_t h, int64_t S, float* K) {
  const int64_t nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, kvrow = nope + c.v_head_dim;
  const int64_t H = c.num_attention_heads, qk = nope + rope;
  for (int64_t i = 0; i < S; ++i) {
    const int64_t t = b * S + i;
    std::memcpy(K + i * qk, &a.kv[size_t((t * H + h) * kvrow)], size_t(nope) * 4);
    std::memcpy(K + i * qk + nope, &a.kpe[size_t(t * rope)], size_t(rope) * 4);
  }
}

void mla_forward(const Ctx& k, const LayerP& L, int64_t B, int64_t S, LayerActs& a) {
  const ModelConfig& c = k.c;
  const int64_t N = B * S, D = k.D, H = c.num_attention_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim;
  const int64_t qk = nope + rope, r = c.kv_lora_rank, dv = c.v_head_dim, kvrow = nope + dv, P = rope / 2;
  const float eps = float(c.rms_norm_eps);
  const RopeTable rt(c, S);

  a.q.resize(static_cast<size_t>(N * H * qk));
  if (c.q_lora_rank > 0) {
    const int64_t ql = c.q_lora_rank;
    a.cq.resize(static_cast<size_t>(N * ql));
    a.cqn.resize(static_cast<size_t>(N * ql));
    a.cq_inv.resize(static_cast<size_t>(N));
    linear_forward(L.q_a.w, ql, D, a.ln1.data(), N, a.cq.data(), k.pool);
    rmsnorm_forward(a.cq.data(), L.q_a_ln.w, N, ql, eps, a.cqn.data(), a.cq_inv.data(), k.pool);
    linear_forward(L.q_b.w, H * qk, ql, a.cqn.data(), N, a.q.data(), k.pool);
  } else {
    linear_forward(L.q_proj.w, H * qk, D, a.ln1.data(), N, a.q.data(), k.pool);
  }
  Vec kva(static_cast<size_t>(N * (r + rope)));
  linear_forward(L.kv_a.w, r + rope, D, a.ln1.data(), N, kva.data(), k.pool);
  a.c_raw.resize(static_cast<size_t>(N * r));
  a.c.resize(static_cast<size_t>(N * r));
  a.c_inv.resize(static_cast<size_t>(N));
  a.kpe.resize(static_cast<size_t>(N * rope));
  for (int64_t t = 0; t < N; ++t) {
    std::memcpy(&a.c_raw[size_t(t * r)], &kva[size_t(t * (r + rope))], size_t(r) * 4);
    std::memcpy(&a.kpe[size_t(t * rope)], &kva[size_t(t * (r + rope) + r)], size_t(rope) * 4);
    const int64_t p = t % S;
    rope_forward(&a.kpe[size_t(t * rope)], &rt.cos[size_t(p * P)], &rt.sin[size_t(p * P)], P);
    for (int64_t h = 0; h < H; ++h)
      rope_forward(&a.q[size_t((t * H + h) * qk + nope)], &rt.cos[size_t(p * P)], &rt.sin[size_t(p * P)], P);
  }
  rmsnorm_forward(a.c_raw.data(), L.kv_a_ln.w, N, r, eps, a.c.data(), a.c_inv.data(), k.pool);
  a.kv.resize(static_cast<size_t>(N * H * kvrow));
  linear_forward(L.kv_b.w, H * kvrow, r, a.c.data(), N, a.kv.data(), k.pool);

  a.P.resize(static_cast<size_t>(B * H * S * S));
  a.attn.resize(static_cast<size_t>(N * H * dv));
  k.pool.parallel_for(B * H, [&](int64_t p0, int64_t p1) {
    Vec K(static_cast<size_t>(S * qk));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / H, h = p % H;
      head_keys(c, a, b, h, S, K.data());
      attention_forward(&a.q[size_t((b * S * H + h) * qk)], H * qk, K.data(), qk,
                        &a.kv[size_t((b * S * H + h) * kvrow + nope)], H * kvrow, S, qk, dv, rt.scale,
                        &a.P[size_t(p * S * S)], &a.attn[size_t((b * S * H + h) * dv)], H * dv);
    }
  });
  a.out_a.resize(static_cast<size_t>(N * D));
  linear_forward(L.o.w, D, H * dv, a.attn.data(), N, a.out_a.data(), k.pool);
}

// dln1 [N, D] += the attention's input gradient, from dout [N, D].
void mla_backward(const Ctx& k, const LayerP& L, int64_t B, int64_t S, const LayerActs& a, const Vec& dout, Vec& dln1) {
  const ModelConfig& c = k.c;
  const int64_t N = B * S, D = k.D, H = c.num_attention_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim;
  const int64_t qk = nope + rope, r = c.kv_lora_rank, dv = c.v_head_dim, kvrow = nope + dv, P = rope / 2;
  const RopeTable rt(c, S);

  Vec dattn(static_cast<size_t>(N * H * dv), 0.0f);
  linear_backward(L.o.w, D, H * dv, a.attn.data(), dout.data(), N, dattn.data(), L.o.g, k.pool);

  Vec dq(static_cast<size_t>(N * H * qk), 0.0f), dkv(static_cast<size_t>(N * H * kvrow), 0.0f), dkpe_h(static_cast<size_t>(B * H * S * rope), 0.0f);
  k.pool.parallel_for(B * H, [&](int64_t p0, int64_t p1) {
    Vec K(static_cast<size_t>(S * qk)), dK(static_cast<size_t>(S * qk));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / H, h = p % H;
      head_keys(c, a, b, h, S, K.data());
      std::fill(dK.begin(), dK.end(), 0.0f);
      const size_t qoff = size_t((b * S * H + h) * qk), voff = size_t((b * S * H + h) * kvrow + nope);
      attention_backward(&a.q[qoff], H * qk, K.data(), qk, &a.kv[voff], H * kvrow, &a.P[size_t(p * S * S)],
                         &dattn[size_t((b * S * H + h) * dv)], H * dv, S, qk, dv, rt.scale, &dq[qoff], dK.data(),
                         &dkv[voff]);
      for (int64_t i = 0; i < S; ++i) {
        const int64_t t = b * S + i;
        float* dkn = &dkv[size_t((t * H + h) * kvrow)];
        for (int64_t j = 0; j < nope; ++j) dkn[j] += dK[size_t(i * qk + j)];
        std::memcpy(&dkpe_h[size_t((p * S + i) * rope)], &dK[size_t(i * qk + nope)], size_t(rope) * 4);
      }
    }
  });
  Vec dkva(static_cast<size_t>(N * (r + rope)), 0.0f);
  for (int64_t t = 0; t < N; ++t) {
    const int64_t b = t / S, i = t % S;
    float* dk = &dkva[size_t(t * (r + rope) + r)];
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < rope; ++j) dk[j] += dkpe_h[size_t(((b * H + h) * S + i) * rope + j)];
    rope_backward(dk, &rt.cos[size_t(i * P)], &rt.sin[size_t(i * P)], P);
    for (int64_t h = 0; h < H; ++h)
      rope_backward(&dq[size_t((t * H + h) * qk + nope)], &rt.cos[size_t(i * P)], &rt.sin[size_t(i * P)], P);
  }
  Vec dc(static_cast<size_t>(N * r), 0.0f), dc_raw(static_cast<size_t>(N * r), 0.0f);
  linear_backward(L.kv_b.w, H * kvrow, r, a.c.data(), dkv.data(), N, dc.data(), L.kv_b.g, k.pool);
  rmsnorm_backward(a.c_raw.data(), L.kv_a_ln.w, a.c_inv.data(), dc.data(), N, r, dc_raw.data(), L.kv_a_ln.g, k.pool);
  for (int64_t t = 0; t < N; ++t) std::memcpy(&dkva[size_t(t * (r + rope))], &dc_raw[size_t(t * r)], size_t(r) * 4);
  linear_backward(L.kv_a.w, r + rope, D, a.ln1.data(), dkva.data(), N, dln1.data(), L.kv_a.g, k.pool);
  if (c.q_lora_rank > 0) {
    const int64_t ql = c.q_lora_rank;
    Vec dcqn(static_cast<size_t>(N * ql), 0.0f), dcq(static_cast<size_t>(N * ql), 0.0f);
    linear_backward(L.q_b.w, H * qk, ql, a.cqn.data(), dq.data(), N, dcqn.data(), L.q_b.g, k.pool);
    rmsnorm_backward(a.cq.data(), L.q_a_ln.w, a.cq_inv.data(), dcqn.data(), N, ql, dcq.data(), L.q_a_ln.g, k.pool);
    linear_backward(L.q_a.w, ql, D, a.ln1.data(), dcq.data(), N, dln1.data(), L.q_a.g, k.pool);
  } else {
    linear_backward(L.q_proj.w, H * qk, D, a.ln1.data(), dq.data(), N, dln1.data(), L.q_proj.g, k.pool);
  }
}

}  // namespace

double layer_balance_loss(const ModelConfig& c, const LayerActs& a, int64_t B, int64_t S) { return balance_loss(c, a, B, S); }

void TrainModel::layer_forward(const LayerP& L, int64_t B, int64_t S, LayerActs& a, float* x_out,
                               std::vector<int64_t>* load) {
  const ModelConfig& c = config_;
  const Ctx k{c, pool_, std::max<int64_t>(1, c.hc_mult), c.hidden_size};
  const int64_t N = B * S, D = k.D, nD = k.n * D;
  const float eps = float(c.rms_norm_eps);

  site_in(k, L.hc_attn, a.x_in, N, a.site_a, a.y1);
  a.ln1.resize(static_cast<size_t>(N * D));
  a.inv1.resize(static_cast<size_t>(N));
  rmsnorm_forward(a.y1.data(), L.input_ln.w, N, D, eps, a.ln1.data(), a.inv1.data(), pool_);
  mla_forward(k, L, B, S, a);
  a.x_mid.resize(static_cast<size_t>(N * nD));
  site_out(k, L.hc_attn, a.x_in, a.site_a, a.out_a, N, a.x_mid.data());

  site_in(k, L.hc_ffn, a.x_mid, N, a.site_f, a.y2);
  a.ln2.resize(static_cast<size_t>(N * D));
  a.inv2.resize(static_cast<size_t>(N));
  rmsnorm_forward(a.y2.data(), L.post_ln.w, N, D, eps, a.ln2.data(), a.inv2.data(), pool_);
  if (L.is_moe) {
    moe_forward(k, L, a.ln2.data(), N, a, load);
  } else {
    a.out_f.resize(static_cast<size_t>(N * D));
    mlp_forward(k, L.mlp, a.ln2.data(), N, a.dense, a.out_f.data());
  }
  site_out(k, L.hc_ffn, a.x_mid, a.site_f, a.out_f, N, x_out);
}

void TrainModel::layer_backward(const LayerP& L, int64_t B, int64_t S, LayerActs& a, const float* dx_out, float* dx_in,
                                float balance_weight) {
  const ModelConfig& c = config_;
  const Ctx k{c, pool_, std::max<int64_t>(1, c.hc_mult), c.hidden_size};
  const int64_t N = B * S, D = k.D, nD = k.n * D;
  Vec df, dpost, dcomb, dx_mid(static_cast<size_t>(N * nD), 0.0f);

  // FFN half
  site_out_backward(k, L.hc_ffn, a.x_mid, a.site_f, a.out_f, dx_out, N, df, dx_mid.data(), dpost, dcomb);
  Vec dln(static_cast<size_t>(N * D), 0.0f), dy(static_cast<size_t>(N * D), 0.0f);
  if (L.is_moe) moe_backward(k, L, a.ln2.data(), B, S, a, df, balance_weight, dln.data());
  else mlp_backward(k, L.mlp, a.ln2.data(), N, a.dense, df.data(), dln.data());
  rmsnorm_backward(a.y2.data(), L.post_ln.w, a.inv2.data(), dln.data(), N, D, dy.data(), L.post_ln.g, pool_);
  site_in_backward(k, L.hc_ffn, a.x_mid, a.site_f, dy, dpost, dcomb, N, dx_mid.data());

  // Attention half
  std::fill(dx_in, dx_in + N * nD, 0.0f);
  site_out_backward(k, L.hc_attn, a.x_in, a.site_a, a.out_a, dx_mid.data(), N, df, dx_in, dpost, dcomb);
  zeros(dln, size_t(N * D));
  zeros(dy, size_t(N * D));
  mla_backward(k, L, B, S, a, df, dln);
  rmsnorm_backward(a.y1.data(), L.input_ln.w, a.inv1.data(), dln.data(), N, D, dy.data(), L.input_ln.g, pool_);
  site_in_backward(k, L.hc_attn, a.x_in, a.site_a, dy, dpost, dcomb, N, dx_in);
}

}  // namespace whale::train
