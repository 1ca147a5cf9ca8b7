#include "train/mhc_grad.h"

#include <cmath>
#include <vector>

#include "kernels/mhc.h"
#include "kernels/ops.h"

namespace whale::train {

namespace {
float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
int group_of(const HyperDims& d, int64_t r) { return d.head ? 0 : r < d.n ? 0 : r < 2 * d.n ? 1 : 2; }

// One normalisation step of Sinkhorn-Knopp: out = a / (sums + eps) over columns or rows.
void normalise(const float* a, int64_t n, float eps, bool columns, float* out) {
  for (int64_t k = 0; k < n; ++k) {
    float s = 0;
    for (int64_t m = 0; m < n; ++m) s += columns ? a[m * n + k] : a[k * n + m];
    for (int64_t m = 0; m < n; ++m) {
      const int64_t idx = columns ? m * n + k : k * n + m;
      out[idx] = a[idx] / (s + eps);
    }
  }
}

// Its transpose: da from dout, given the step's input a.
void normalise_backward(const float* a, const float* dout, int64_t n, float eps, bool columns, float* da) {
  for (int64_t k = 0; k < n; ++k) {
    float s = 0, g = 0;
    for (int64_t m = 0; m < n; ++m) {
      const int64_t idx = columns ? m * n + k : k * n + m;
      s += a[idx];
      g += dout[idx] * a[idx];
    }
    const float inv = 1.0f / (s + eps);
    for (int64_t m = 0; m < n; ++m) {
      const int64_t idx = columns ? m * n + k : k * n + m;
      da[idx] = dout[idx] * inv - g * inv * inv;
    }
  }
}
}  // namespace

void hc_weights_forward(const HyperDims& d, const float* mix, const float* base, const float* scale, float* pre,
                        float* post, float* comb) {
  const int64_t n = d.n;
  for (int64_t i = 0; i < n; ++i) pre[i] = sigmoid(mix[i] * scale[0] + base[i]) + d.hc_eps;
  if (d.head) return;
  for (int64_t i = 0; i < n; ++i) post[i] = 2.0f * sigmoid(mix[n + i] * scale[1] + base[n + i]);
  for (int64_t i = 0; i < n; ++i) {
    float* row = comb + i * n;
    for (int64_t j = 0; j < n; ++j) row[j] = mix[2 * n + i * n + j] * scale[2] + base[2 * n + i * n + j];
    softmax_inplace(row, n);
    for (int64_t j = 0; j < n; ++j) row[j] += d.hc_eps;
  }
  sinkhorn_knopp(comb, n, d.sinkhorn_iters, d.hc_eps);
}

void hc_weights_backward(const HyperDims& d, const float* mix, const float* base, const float* scale,
                         const float* dpre, const float* dpost, const float* dcomb, float* da) {
  const int64_t n = d.n, nn = n * n;
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid(mix[i] * scale[0] + base[i]);
    da[i] = dpre[i] * s * (1.0f - s);
  }
  if (d.head) return;
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid(mix[n + i] * scale[1] + base[n + i]);
    da[n + i] = dpost[i] * 2.0f * s * (1.0f - s);
  }
  // Recompute the Sinkhorn stages: stage 0 = softmax rows + eps, then column, (row, column)...
  const int steps = 1 + 2 * (d.sinkhorn_iters - 1);
  // Per-thread scratch: this runs once per token and site, so allocating here cost more than the math.
  thread_local std::vector<float> stage, soft, g, prev;
  stage.resize(static_cast<size_t>((steps + 1) * nn));
  soft.resize(static_cast<size_t>(nn));
  for (int64_t i = 0; i < n; ++i) {
    float* row = &soft[size_t(i * n)];
    for (int64_t j = 0; j < n; ++j) row[j] = mix[2 * n + i * n + j] * scale[2] + base[2 * n + i * n + j];
    softmax_inplace(row, n);
    for (int64_t j = 0; j < n; ++j) stage[size_t(i * n + j)] = row[j] + d.hc_eps;
  }
  auto is_columns = [](int step) { return step % 2 == 0; };  // step 0 columns, 1 rows, 2 columns...
  for (int s = 0; s < steps; ++s)
    normalise(&stage[size_t(s * nn)], n, d.hc_eps, is_columns(s), &stage[size_t((s + 1) * nn)]);
  g.assign(dcomb, dcomb + nn);
  prev.resize(static_cast<size_t>(nn));
  for (int s = steps - 1; s >= 0; --s) {
    normalise_backward(&stage[size_t(s * nn)], g.data(), n, d.hc_eps, is_columns(s), prev.data());
    g.swap(prev);
  }
  for (int64_t i = 0; i < n; ++i) {  // softmax rows (the +eps passes the gradient through)
    const float* p = &soft[size_t(i * n)];
    const float* gr = &g[size_t(i * n)];
    float dotp = 0;
    for (int64_t j = 0; j < n; ++j) dotp += p[j] * gr[j];
    for (int64_t j = 0; j < n; ++j) da[2 * n + i * n + j] = p[j] * (gr[j] - dotp);
  }
}

void hc_reduce_grads(const HyperDims& d, const float* mix, const float* da, const float* scale, int64_t N, float* dmix,
                     float* dbase, float* dscale) {
  const int64_t rows = d.rows();
  for (int64_t t = 0; t < N; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = t * rows + r;
      const int g = group_of(d, r);
      dmix[i] = da[i] * scale[g];
      dbase[r] += da[i];
      dscale[g] += da[i] * mix[i];
    }
}

}  // namespace whale::train
