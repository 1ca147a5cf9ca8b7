// Manifold-Constrained Hyper-Connections (mHC), as DeepSeek-V4 ships them: n residual
// streams per token, read into a sublayer and written back through per-token weights.
// All in float32.
//
// One site, for the streams x [n, D] of one token:
//   mix  = fn · rmsnorm(flatten(x))                    fn [(2+n)·n, n·D], no norm weight
//   pre  = sigmoid(mix[0:n]·scale[0] + base[0:n]) + hc_eps              [n]
//   post = 2·sigmoid(mix[n:2n]·scale[1] + base[n:2n])                     [n]
//   comb = SinkhornKnopp(softmax_rows(mix[2n:]·scale[2] + base[2n:]))   [n, n], doubly stochastic
//   y    = Σ_i pre[i]·x[i]                     the sublayer's input
//   x'_j = post[j]·f + Σ_i comb[i][j]·x[i]     after the sublayer returns f (comb used transposed)
#pragma once
#include <cstdint>

#include "kernels/weight.h"

namespace whale {

struct HyperSiteMath {
  int64_t n, dim;          // streams, hidden size
  float rms_eps, hc_eps;
  int sinkhorn_iters;
};

// x [n, D] -> pre [n], post [n], comb [n, n] (row i: input stream, column j: output stream).
void mhc_site_weights(const HyperSiteMath& m, const float* x, const Weight& fn, const float* base, const float* scale,
                      float* pre, float* post, float* comb);

// comb [n, n] holds softmax rows (+hc_eps); makes it doubly stochastic: column normalisation,
// then (iters - 1) × (rows, columns), each division guarded by eps.
void sinkhorn_knopp(float* comb, int64_t n, int iters, float eps);

// y [D] = Σ_i w[i]·x[i]
void mhc_collapse(const float* x, const float* w, int64_t n, int64_t D, float* y);

// x [n, D] <- post[j]·f + Σ_i comb[i][j]·x[i]; scratch holds n·D floats.
void mhc_expand(float* x, const float* post, const float* comb, const float* f, int64_t n, int64_t D, float* scratch);

// The final collapse before the model's norm: pre = sigmoid(fn·rmsnorm(flat)·scale + base) + eps.
void mhc_head(const HyperSiteMath& m, const float* x, const Weight& fn, const float* base, float scale, float* y);

}  // namespace whale
