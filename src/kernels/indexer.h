// The lightning indexer of DeepSeek Sparse Attention (V3.2) and the activation roundings of
// DeepSeek's official inference code: plain loops (a few values per token, or one score per
// cached token), each the reference for itself.
#pragma once
#include <cstdint>
#include <vector>

namespace whale {

// out = w ⊙ (x − mean) / sqrt(var + eps) + b   (LayerNorm with bias; var is the biased one)
void layernorm(const float* x, const float* w, const float* b, int64_t n, float eps, float* out);

// Rotates the pairs (x[i], x[i + n_pairs]) by angle i: the half-split RoPE layout (Hugging
// Face's rotate_half), which the V3.2 indexer uses on its first 2·n_pairs dims.
void rope_half_split(float* x, const float* cos, const float* sin, int64_t n_pairs);

// x <- H_n x / sqrt(n): the orthonormal Walsh-Hadamard transform in Sylvester (natural) order,
// n a power of two (DeepSeek's rotate_activation).
void hadamard_rotate(float* x, int64_t n);

// What DeepSeek's act_quant followed by a dequantization does to x, in place: each block of
// `block` values (the last may be shorter) is divided by s = 2^ceil(log2(max(amax, 1e-4) / 448))
// (ue8m0: a power-of-two scale), rounded to float8 e4m3 (nearest even, saturating) and
// multiplied back. The result is exactly what an FP8 cache with those scales holds.
void fp8_round_blocks(float* x, int64_t n, int64_t block = 128);

// Index scores of one query against n_rows cached keys:
//   I[j] = Σ_h w[h] · max(0, scale · q_h · k_j)        q: [n_heads, dim], k_j = rows[j][0:dim]
// The dot products go through attention.h's dot_rows; each I[j] depends only on q, w and k_j.
// `scratch` holds n_heads · n_rows floats.
void index_scores(const float* q, const float* w, int64_t n_heads, int64_t dim, const float* const* rows,
                  int64_t n_rows, float scale, float* scratch, float* out);

// The positions of the k highest of scores[0:n] (ties: the lower position), ascending.
void top_k_positions(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out);

}  // namespace whale

namespace whale {

// x <- x / sqrt(mean(x²) + eps)   (RMSNorm without a weight: V4's per-head query norm)
void rmsnorm_unweighted(float* x, int64_t n, float eps);

// DeepSeek-V4's compressor pooling, per channel c < dim: out[c] = Σ_s softmax_s(gate_s[c]) · kv_s[c]
// over the n_slots rows (each slot's kv and gate are `dim` values at the given pointers).
void compress_slots(const float* const* kv, const float* const* gate, int64_t n_slots, int64_t dim, float* out);

// What DeepSeek's FP4 activation quantization followed by a dequantization does to x, in place:
// per block of `block` values a power-of-two scale s = 2^ceil(log2(max(amax, 6·2^-126) / 6)) and
// values rounded to float4 e2m1 {0, 0.5, 1, 1.5, 2, 3, 4, 6} (nearest, ties to even), times s.
void fp4_round_blocks(float* x, int64_t n, int64_t block = 32);
// The same rounding of one block of n values as e2m1 codes (bit 3 the sign, bits 0-2 the level;
// core/dtype.h's fp4_e2m1_to_f32) and the block's scale s, which it returns.
float fp4_encode_block(const float* x, int64_t n, uint8_t* codes);

}  // namespace whale
