#include "kernels/mhc.h"

#include <cmath>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace whale {

namespace {
float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

// mix = fn · (flat / rms(flat)): the norm is a per-token scalar, so it can be applied to the
// flattened streams before the product (as HF does) or to the product after it (as the spec
// writes it); the result is the same up to rounding.
void normed_mix(const HyperSiteMath& m, const float* x, const Weight& fn, std::vector<float>& flat, std::vector<float>& mix) {
  const int64_t nd = m.n * m.dim;
  double ss = 0;
  for (int64_t i = 0; i < nd; ++i) ss += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(ss / double(nd) + double(m.rms_eps)));
  flat.resize(size_t(nd));
  for (int64_t i = 0; i < nd; ++i) flat[size_t(i)] = x[i] * inv;
  mix.resize(size_t(fn.rows));
  for (int64_t r = 0; r < fn.rows; ++r) mix[size_t(r)] = dot_row(fn, r, flat.data());
}
}  // namespace

void sinkhorn_knopp(float* comb, int64_t n, int iters, float eps) {
  auto normalise_columns = [&] {
    for (int64_t j = 0; j < n; ++j) {
      float s = 0;
      for (int64_t i = 0; i < n; ++i) s += comb[i * n + j];
      for (int64_t i = 0; i < n; ++i) comb[i * n + j] /= s + eps;
    }
  };
  auto normalise_rows = [&] {
    for (int64_t i = 0; i < n; ++i) {
      float s = 0;
      for (int64_t j = 0; j < n; ++j) s += comb[i * n + j];
      for (int64_t j = 0; j < n; ++j) comb[i * n + j] /= s + eps;
    }
  };
  normalise_columns();
  for (int it = 1; it < iters; ++it) {
    normalise_rows();
    normalise_columns();
  }
}

void mhc_site_weights(const HyperSiteMath& m, const float* x, const Weight& fn, const float* base, const float* scale,
                      float* pre, float* post, float* comb) {
  const int64_t n = m.n;
  std::vector<float> flat, mix;
  normed_mix(m, x, fn, flat, mix);
  for (int64_t i = 0; i < n; ++i) {
    pre[i] = sigmoid(mix[size_t(i)] * scale[0] + base[i]) + m.hc_eps;
    post[i] = 2.0f * sigmoid(mix[size_t(n + i)] * scale[1] + base[n + i]);
  }
  for (int64_t i = 0; i < n; ++i) {  // softmax over each row, then + eps
    float* row = comb + i * n;
    for (int64_t j = 0; j < n; ++j) row[j] = mix[size_t(2 * n + i * n + j)] * scale[2] + base[2 * n + i * n + j];
    softmax_inplace(row, n);
    for (int64_t j = 0; j < n; ++j) row[j] += m.hc_eps;
  }
  sinkhorn_knopp(comb, n, m.sinkhorn_iters, m.hc_eps);
}

void mhc_collapse(const float* x, const float* w, int64_t n, int64_t D, float* y) {
  for (int64_t d = 0; d < D; ++d) y[d] = 0.0f;
  for (int64_t i = 0; i < n; ++i) axpy(w[i], x + i * D, y, D);
}

void mhc_expand(float* x, const float* post, const float* comb, const float* f, int64_t n, int64_t D, float* scratch) {
  for (int64_t k = 0; k < n * D; ++k) scratch[k] = x[k];
  for (int64_t j = 0; j < n; ++j) {
    float* out = x + j * D;
    for (int64_t d = 0; d < D; ++d) out[d] = post[j] * f[d];
    for (int64_t i = 0; i < n; ++i) axpy(comb[i * n + j], scratch + i * D, out, D);
  }
}

void mhc_head(const HyperSiteMath& m, const float* x, const Weight& fn, const float* base, float scale, float* y) {
  std::vector<float> flat, mix, pre(static_cast<size_t>(m.n));
  normed_mix(m, x, fn, flat, mix);
  for (int64_t i = 0; i < m.n; ++i) pre[size_t(i)] = sigmoid(mix[size_t(i)] * scale + base[i]) + m.hc_eps;
  mhc_collapse(x, pre.data(), m.n, m.dim, y);
}

}  // namespace whale
