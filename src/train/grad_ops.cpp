#include "train/grad_ops.h"

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/matmul.h"

namespace whale::train {

namespace {

Weight f32_weight(const float* data, int64_t rows, int64_t cols) {
  Weight w;
  w.dtype = DType::F32;
  w.rows = rows;
  w.cols = cols;
  w.data = reinterpret_cast<const uint8_t*>(data);
  return w;
}

// out [cols, rows] = in [rows, cols]ᵀ
void transpose(const float* in, int64_t rows, int64_t cols, float* out, ThreadPool& pool) {
  pool.parallel_for(cols, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t r = 0; r < rows; ++r) out[c * rows + r] = in[r * cols + c];
  }, 16);
}

void add_into(float* dst, const float* src, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] += src[i];
  }, 4096);
}

}  // namespace

void linear_forward(const float* W, int64_t out, int64_t in, const float* x, int64_t N, float* y, ThreadPool& pool) {
  if (N == 0) return;
  matmul(f32_weight(W, out, in), x, N, y, pool);
}

void linear_backward(const float* W, int64_t out, int64_t in, const float* x, const float* dy, int64_t N, float* dx,
                     float* dW, ThreadPool& pool) {
  if (N == 0) return;
  if (dx) {  // dx [N, in] += dy · W = dy · (Wᵀ)ᵀ: the GEMM against the transposed weight
    std::vector<float> wt(static_cast<size_t>(out * in)), tmp(static_cast<size_t>(N * in));
    transpose(W, out, in, wt.data(), pool);
    matmul(f32_weight(wt.data(), in, out), dy, N, tmp.data(), pool);
    add_into(dx, tmp.data(), N * in, pool);
  }
  // dW [out, in] += dyᵀ · x: rows of xᵀ [in, N] against the rows of dyᵀ [out, N]
  std::vector<float> xt(static_cast<size_t>(in * N)), dyt(static_cast<size_t>(out * N)), tmp(static_cast<size_t>(out * in));
  transpose(x, N, in, xt.data(), pool);
  transpose(dy, N, out, dyt.data(), pool);
  matmul(f32_weight(xt.data(), in, N), dyt.data(), out, tmp.data(), pool);
  add_into(dW, tmp.data(), out * in, pool);
}

void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t n, float eps, float* y, float* inv_rms) {
  for (int64_t r = 0; r < N; ++r) {
    const float* xr = x + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * double(xr[i]);
    const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    inv_rms[r] = inv;
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = (w ? w[i] : 1.0f) * (xr[i] * inv);
  }
}

void rmsnorm_backward(const float* x, const float* w, const float* inv_rms, const float* dy, int64_t N, int64_t n,
                      float* dx, float* dw) {
  // y_i = w_i x_i s, s = (mean(x²) + eps)^(-1/2):  dx_i = s·w_i·dy_i - x_i s³/n · Σ_j w_j dy_j x_j
  for (int64_t r = 0; r < N; ++r) {
    const float *xr = x + r * n, *dyr = dy + r * n;
    const float s = inv_rms[r];
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) acc += double((w ? w[i] : 1.0f) * dyr[i]) * double(xr[i]);
    const float c = float(acc) * s * s * s / float(n);
    for (int64_t i = 0; i < n; ++i) dx[r * n + i] += s * (w ? w[i] : 1.0f) * dyr[i] - xr[i] * c;
    if (dw)
      for (int64_t i = 0; i < n; ++i) dw[i] += dyr[i] * xr[i] * s;
  }
}

void rope_forward(float* x, const float* cos, const float* sin, int64_t n_pairs) {
  for (int64_t i = 0; i < n_pairs; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * cos[i] - b * sin[i];
    x[2 * i + 1] = b * cos[i] + a * sin[i];
  }
}

void rope_backward(float* dx, const float* cos, const float* sin, int64_t n_pairs) {
  for (int64_t i = 0; i < n_pairs; ++i) {  // the transposed rotation
    const float da = dx[2 * i], db = dx[2 * i + 1];
    dx[2 * i] = da * cos[i] + db * sin[i];
    dx[2 * i + 1] = db * cos[i] - da * sin[i];
  }
}

void swiglu_forward(const float* g, const float* u, int64_t n, float* h) {
  for (int64_t i = 0; i < n; ++i) h[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void swiglu_backward(const float* g, const float* u, const float* dh, int64_t n, float* dg, float* du) {
  for (int64_t i = 0; i < n; ++i) {
    const float sg = 1.0f / (1.0f + std::exp(-g[i]));
    const float silu = g[i] * sg;
    du[i] += dh[i] * silu;
    dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));  // silu'(g)
  }
}

void attention_forward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                       int64_t T, int64_t dk, int64_t dv, float scale, float* P, float* o, int64_t ldo) {
  for (int64_t i = 0; i < T; ++i) {
    float* p = P + i * T;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j <= i; ++j) {
      float s = 0;
      for (int64_t d = 0; d < dk; ++d) s += q[i * ldq + d] * k[j * ldk + d];
      p[j] = s * scale;
      mx = std::fmax(mx, p[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j <= i; ++j) {
      p[j] = std::exp(p[j] - mx);
      sum += p[j];
    }
    const float inv = float(1.0 / sum);
    for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
    for (int64_t j = i + 1; j < T; ++j) p[j] = 0.0f;
    float* oi = o + i * ldo;
    for (int64_t d = 0; d < dv; ++d) oi[d] = 0.0f;
    for (int64_t j = 0; j <= i; ++j)
      for (int64_t d = 0; d < dv; ++d) oi[d] += p[j] * v[j * ldv + d];
  }
}

void attention_backward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                        const float* P, const float* d_o, int64_t ldo, int64_t T, int64_t dk, int64_t dv, float scale,
                        float* dq, float* dkk, float* dvv) {
  std::vector<float> dp(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    const float* p = P + i * T;
    const float* doi = d_o + i * ldo;
    // dP_ij = do_i · v_j;  dS_ij = P_ij (dP_ij - Σ_k P_ik dP_ik)
    double row = 0;
    for (int64_t j = 0; j <= i; ++j) {
      float s = 0;
      for (int64_t d = 0; d < dv; ++d) s += doi[d] * v[j * ldv + d];
      dp[size_t(j)] = s;
      row += double(p[j]) * double(s);
      for (int64_t d = 0; d < dv; ++d) dvv[j * ldv + d] += p[j] * doi[d];  // dV = Pᵀ dO
    }
    for (int64_t j = 0; j <= i; ++j) {
      const float ds = p[j] * (dp[size_t(j)] - float(row)) * scale;
      for (int64_t d = 0; d < dk; ++d) {
        dq[i * ldq + d] += ds * k[j * ldk + d];
        dkk[j * ldk + d] += ds * q[i * ldq + d];
      }
    }
  }
}

void log_softmax_target(float* logits, const int32_t* target, int64_t R, int64_t V, float* logp, ThreadPool& pool) {
  pool.parallel_for(R, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* l = logits + r * V;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < V; ++i) mx = std::fmax(mx, l[i]);
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) sum += std::exp(double(l[i] - mx));
      const double lse = double(mx) + std::log(sum);
      logp[r] = float(double(l[target[r]]) - lse);
      for (int64_t i = 0; i < V; ++i) l[i] = float(std::exp(double(l[i]) - lse));
    }
  });
}

void log_softmax_target_backward(const float* probs, const int32_t* target, const float* dlogp, int64_t R, int64_t V,
                                 float* dlogits, ThreadPool& pool) {
  pool.parallel_for(R, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t i = 0; i < V; ++i) dlogits[r * V + i] = -dlogp[r] * probs[r * V + i];
      dlogits[r * V + target[r]] += dlogp[r];
    }
  });
}

}  // namespace whale::train
