// Matrix products against stored weights: y = x · Wᵀ for a batch of token rows.
// The reduction order of every output element is fixed (independent of how many tokens
// are in the batch or how rows are split across threads), so a request computes bitwise
// the same numbers alone or batched with others.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/weight.h"

namespace whale {

// y[t * ldy + (r - r0)] = Σ_c W[r][c] · x[t * ldx + c]   for r in [r0, r1), t in [0, n_tok).
void matmul_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n_tok, float* y,
                 int64_t ldy, ThreadPool& pool);

// The whole matrix: x [n_tok, cols] -> y [n_tok, rows].
inline void matmul(const Weight& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool) {
  matmul_rows(w, 0, w.rows, x, w.cols, n_tok, y, w.rows, pool);
}

// Independent products x [n_tok, cols] -> y [n_tok, rows] run in one parallel region: one
// hand-off and one wait for all of them instead of one each. Decode runs a few hundred small
// products per token (MoE experts above all), and each wait costs the faster thread its idle
// time. Each job's y is bitwise what matmul() gives it alone; jobs with the same x and weight
// type quantize the activations once.
struct MatmulJob {
  const Weight* w;
  const float* x;  // [n_tok, w->cols]
  int64_t n_tok;
  float* y;        // [n_tok, w->rows]
};
void matmul_batch(const std::vector<MatmulJob>& jobs, ThreadPool& pool);

// Transposed product over a band of rows: y[c] = Σ_{r in [r0, r1)} x[r - r0] · W[r][c].
// Single-threaded (callers parallelise over bands, e.g. attention heads).
void matvec_transposed(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y);

// Row r of W as float32 (cols values), scales applied.
void dequantize_row(const Weight& w, int64_t r, float* out);

// One output element, single-threaded: Σ_c W[r][c] · x[c].
float dot_row(const Weight& w, int64_t r, const float* x);

}  // namespace whale
