// mHC (kernels/mhc.h has the forward equations) for training: the per-token part of a site,
// from its mixing vector to pre/post/comb, and the way back, through the Sinkhorn-Knopp
// iterations. The projection mix = fn · rmsnorm(flatten(x)) runs batched in the caller.
//
//   a    = mix ⊙ scale[group] + base                  groups: pre [0,n), post [n,2n), comb [2n, 2n+n²)
//   pre  = sigmoid(a_pre) + hc_eps,  post = 2·sigmoid(a_post)
//   comb = SinkhornKnopp(softmax_rows(a_comb) + hc_eps)
// A head site (the final collapse) has only the pre group and one scale.
#pragma once
#include <cstdint>

namespace whale::train {

struct HyperDims {
  int64_t n;        // streams (hc_mult)
  float hc_eps;
  int sinkhorn_iters;
  bool head;        // final collapse: rows = n, pre only
  int64_t rows() const { return head ? n : (2 + n) * n; }
};

// mix [rows] -> pre [n], post [n], comb [n, n] (post/comb unused for a head).
void hc_weights_forward(const HyperDims& d, const float* mix, const float* base, const float* scale, float* pre,
                        float* post, float* comb);

// Gradients of pre/post/comb -> da [rows], the gradient of the pre-activations a
// (dmix = da ⊙ scale[group], dbase = da, dscale[group] = Σ da ⊙ mix: hc_reduce_grads).
// dpost/dcomb are ignored for a head.
void hc_weights_backward(const HyperDims& d, const float* mix, const float* base, const float* scale,
                         const float* dpre, const float* dpost, const float* dcomb, float* da);

// For N tokens: dmix [N, rows] = da ⊙ scale; dbase [rows] += Σ_t da; dscale [groups] += Σ_t Σ da ⊙ mix.
void hc_reduce_grads(const HyperDims& d, const float* mix, const float* da, const float* scale, int64_t N, float* dmix,
                     float* dbase, float* dscale);

}  // namespace whale::train
