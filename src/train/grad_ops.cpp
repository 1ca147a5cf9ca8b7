#include "train/grad_ops.h"

#include <cmath>
#include <type_traits>
#include <limits>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/sgemm.h"

namespace whale::train {

namespace {

// out [cols, rows] = in [rows, cols]ᵀ
void transpose(const float* in, int64_t rows, int64_t cols, float* out, ThreadPool& pool) {
  pool.parallel_for(cols, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t r = 0; r < rows; ++r) out[c * rows + r] = in[r * cols + c];
  }, 16);
}

}  // namespace

void linear_forward(const float* W, int64_t out, int64_t in, const float* x, int64_t N, float* y, ThreadPool& pool) {
  if (N == 0) return;
  if (out < 16) {  // a few outputs (mHC mixing weights): row dot products suit them better
    Weight w;
    w.dtype = DType::F32;
    w.rows = out;
    w.cols = in;
    w.data = reinterpret_cast<const uint8_t*>(W);
    matmul(w, x, N, y, pool);
    return;
  }
  // y [N, out] = x [N, in] · Wᵀ [in, out]
  std::vector<float> wt(static_cast<size_t>(out * in));
  transpose(W, out, in, wt.data(), pool);
  sgemm(SgemmArgs{N, out, in, x, in, wt.data(), out, y, out, false}, pool);
}

void linear_backward(const float* W, int64_t out, int64_t in, const float* x, const float* dy, int64_t N, float* dx,
                     float* dW, ThreadPool& pool) {
  if (N == 0) return;
  // dx [N, in] += dy [N, out] · W [out, in]
  if (dx) sgemm(SgemmArgs{N, in, out, dy, out, W, in, dx, in, true}, pool);
  // dW [out, in] += dyᵀ [out, N] · x [N, in]  (dy read transposed in place)
  sgemm(SgemmArgs{out, in, N, dy, out, x, in, dW, in, true, true}, pool);
}

// Rows in parallel; the weight gradient by columns (each dw[i] sums its rows in order), so
// results do not depend on the thread count.
void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t n, float eps, float* y, float* inv_rms,
                     ThreadPool& pool) {
  pool.parallel_for(N, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      double ss[4] = {0, 0, 0, 0};  // four chains of adds (see rmsnorm_backward)
      int64_t i = 0;
      for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; ++j) ss[j] += double(xr[i + j]) * double(xr[i + j]);
      for (; i < n; ++i) ss[0] += double(xr[i]) * double(xr[i]);
      const double sum = (ss[0] + ss[1]) + (ss[2] + ss[3]);
      const float inv = float(1.0 / std::sqrt(sum / double(n) + double(eps)));
      inv_rms[r] = inv;
      float* yr = y + r * n;
      if (w) {
        for (i = 0; i < n; ++i) yr[i] = w[i] * (xr[i] * inv);
      } else {
        for (i = 0; i < n; ++i) yr[i] = xr[i] * inv;
      }
    }
  }, 16);
}

void rmsnorm_backward(const float* x, const float* w, const float* inv_rms, const float* dy, int64_t N, int64_t n,
                      float* dx, float* dw, ThreadPool& pool) {
  // y_i = w_i x_i s, s = (mean(x²) + eps)^(-1/2):  dx_i = s·w_i·dy_i - x_i s³/n · Σ_j w_j dy_j x_j
  // The weight-free and weighted forms are separate loops (no branch per element), and the
  // double sum runs in four chains so it is not one long chain of dependent adds.
  auto rows = [&](auto weighted, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * n, *dyr = dy + r * n;
      const float s = inv_rms[r];
      double acc[4] = {0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; ++j) {
          const float g = weighted ? w[i + j] * dyr[i + j] : dyr[i + j];
          acc[j] += double(g) * double(xr[i + j]);
        }
      for (; i < n; ++i) acc[0] += double(weighted ? w[i] * dyr[i] : dyr[i]) * double(xr[i]);
      const float c = float((acc[0] + acc[1]) + (acc[2] + acc[3])) * s * s * s / float(n);
      float* dxr = dx + r * n;
      for (i = 0; i < n; ++i) dxr[i] += s * (weighted ? w[i] * dyr[i] : dyr[i]) - xr[i] * c;
    }
  };
  pool.parallel_for(N, [&](int64_t r0, int64_t r1) {
    if (w) rows(std::true_type{}, r0, r1);
    else rows(std::false_type{}, r0, r1);
  }, 16);
  if (dw)
    pool.parallel_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t r = 0; r < N; ++r) {
        const float *xr = x + r * n, *dyr = dy + r * n;
        const float s = inv_rms[r];
        for (int64_t i = i0; i < i1; ++i) dw[i] += dyr[i] * xr[i] * s;
      }
    }, 64);
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

void attention_forward_reference(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
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

void attention_backward_reference(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
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

// The same computations through the GEMM kernel (one thread: callers run heads in parallel).
// Scores are computed for the whole T×T square and the upper triangle zeroed after the
// softmax, which costs twice the FLOPs of the triangle but runs at GEMM speed.
void attention_forward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                       int64_t T, int64_t dk, int64_t dv, float scale, float* P, float* o, int64_t ldo) {
  std::vector<float> kt(static_cast<size_t>(dk * T));  // Kᵀ [dk, T]
  for (int64_t j = 0; j < T; ++j)
    for (int64_t d = 0; d < dk; ++d) kt[size_t(d * T + j)] = k[j * ldk + d];
  sgemm_rows_simd(SgemmArgs{T, T, dk, q, ldq, kt.data(), T, P, T, false}, 0, T);  // S = Q·Kᵀ
  for (int64_t i = 0; i < T; ++i) {
    float* p = P + i * T;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j <= i; ++j) mx = std::fmax(mx, p[j] *= scale);
    double sum = 0;
    for (int64_t j = 0; j <= i; ++j) {
      p[j] = std::exp(p[j] - mx);
      sum += p[j];
    }
    const float inv = float(1.0 / sum);
    for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
    for (int64_t j = i + 1; j < T; ++j) p[j] = 0.0f;
  }
  sgemm_rows_simd(SgemmArgs{T, dv, T, P, T, v, ldv, o, ldo, false}, 0, T);  // O = P·V
}

void attention_backward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                        const float* P, const float* d_o, int64_t ldo, int64_t T, int64_t dk, int64_t dv, float scale,
                        float* dq, float* dkk, float* dvv) {
  std::vector<float> t1(static_cast<size_t>(std::max(dv, int64_t(1)) * T)), dS(static_cast<size_t>(T * T)),
      tT(static_cast<size_t>(T * T));
  for (int64_t j = 0; j < T; ++j)  // Vᵀ [dv, T]
    for (int64_t d = 0; d < dv; ++d) t1[size_t(d * T + j)] = v[j * ldv + d];
  sgemm_rows_simd(SgemmArgs{T, T, dv, d_o, ldo, t1.data(), T, dS.data(), T, false}, 0, T);  // dP = dO·Vᵀ
  for (int64_t i = 0; i < T; ++i)  // Pᵀ
    for (int64_t j = 0; j < T; ++j) tT[size_t(j * T + i)] = P[i * T + j];
  sgemm_rows_simd(SgemmArgs{T, dv, T, tT.data(), T, d_o, ldo, dvv, ldv, true}, 0, T);  // dV += Pᵀ·dO
  for (int64_t i = 0; i < T; ++i) {  // dS_ij = P_ij (dP_ij - Σ_k P_ik dP_ik) · scale
    const float* p = P + i * T;
    float* ds = dS.data() + i * T;
    double row = 0;
    for (int64_t j = 0; j <= i; ++j) row += double(p[j]) * double(ds[j]);
    for (int64_t j = 0; j <= i; ++j) ds[j] = p[j] * (ds[j] - float(row)) * scale;
    for (int64_t j = i + 1; j < T; ++j) ds[j] = 0.0f;
  }
  sgemm_rows_simd(SgemmArgs{T, dk, T, dS.data(), T, k, ldk, dq, ldq, true}, 0, T);  // dQ += dS·K
  for (int64_t i = 0; i < T; ++i)  // dSᵀ
    for (int64_t j = 0; j < T; ++j) tT[size_t(j * T + i)] = dS[size_t(i * T + j)];
  sgemm_rows_simd(SgemmArgs{T, dk, T, tT.data(), T, q, ldq, dkk, ldk, true}, 0, T);  // dK += dSᵀ·Q
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
