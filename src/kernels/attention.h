// The attention-weighted sum of decode's absorbed MLA (model/mla.cpp): every head's probabilities
// times the same latent cache rows. Vectorized per instruction set by Highway
// (attention_simd.cpp); weighted_rows_reference is the plain loop it is tested against.
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

}  // namespace whale
