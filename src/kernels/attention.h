// Decode's absorbed MLA (model/mla.cpp): every head's query scored against the same latent cache
// rows, the softmax, and the attention-weighted sum of those rows. Vectorized per instruction set
// by Highway (attention_simd.cpp); the *_reference functions are the plain loops they are tested
// against.
#pragma once
#include <cstdint>

namespace whale {

// out[h · ld_out + c] = Σ_j p[j · n_heads + h] · rows[j][c]   for h < n_heads, c in [c0, c1).
// Each output sums over j = 0, 1, ... in order with multiply-adds from zero, fused in the scalar
// version and on instruction sets with FMA (AVX2 and later, NEON), where both give the same bits.
// Each row is loaded once per group of heads, not once per head.
void weighted_rows(const float* p, int64_t n_heads, const float* const* rows, int64_t n_rows, int64_t c0, int64_t c1,
                   float* out, int64_t ld_out);
void weighted_rows_reference(const float* p, int64_t n_heads, const float* const* rows, int64_t n_rows, int64_t c0,
                             int64_t c1, float* out, int64_t ld_out);

// out[h · ld_out + j] = scale · Σ_c q[h · ldq + c] · rows[j][c]   for h < n_heads, j < n_rows,
// c < n_cols. Each row is loaded once per group of heads. The vector version sums in lanes and
// then across them, so it differs from the in-order reference by rounding.
void dot_rows(const float* q, int64_t n_heads, int64_t ldq, const float* const* rows, int64_t n_rows, int64_t n_cols,
              float scale, float* out, int64_t ld_out);
void dot_rows_reference(const float* q, int64_t n_heads, int64_t ldq, const float* const* rows, int64_t n_rows,
                        int64_t n_cols, float scale, float* out, int64_t ld_out);

// In-place softmax of n values (kernels/ops.h's softmax_inplace is the reference: the same
// maximum, Highway's exp within a few ulp of std::exp, the sum in float lanes).
void softmax(float* x, int64_t n);

}  // namespace whale
