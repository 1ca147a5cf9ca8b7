// llama.cpp's block-quantized weight formats (GGUF Q8_0, Q4_0, Q5_0, Q4_K, Q6_K, MXFP4): layouts,
// scalar dequantization, reference quantizers, and the quantized activations they are multiplied
// with.
//
//   Q8_0  32 values   { f16 d; int8 q[32]; }                          v = d·q
//   Q4_0  32 values   { f16 d; u8 qs[16]; }                           v = d·(q − 8), q a nibble:
//                     values 0-15 in the low nibbles, 16-31 in the high ones
//   Q5_0  32 values   { f16 d; u8 qh[4]; u8 qs[16]; }                 v = d·(q − 16), q 5 bits: the
//                     nibbles as in Q4_0, bit 4 of value j is bit j of qh (little-endian)
//   Q4_K  256 values  { f16 d; f16 dmin; u8 scales[12]; u8 q[128]; }  8 sub-blocks of 32 with
//                     6-bit scale s and min m: v = d·s·q − dmin·m, q a nibble
//   Q6_K  256 values  { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; } 16 sub-blocks of 16:
//                     v = d·scale·(q − 32), q 6 bits (4 from ql, 2 from qh)
//   MXFP4 32 values   { e8m0 e; u8 qs[16]; }                          v = 2^(e−128)·k[q], q an e2m1
//                     nibble (placed as in Q4_0), k = twice its value: {0,1,2,3,4,6,8,12, 0,−1,..,−12}
//
// Activations are quantized per token to int8 with one float32 scale per weight block, as in
// llama.cpp (Q8_0 for the 32-value types, Q8_K for the K types): products are then integer dot
// products, and a K-type super-block of 256 products sums in int32 with the integer sub-block
// scales before it meets a float. They are stored in blocks of 32 for every weight type (the
// scale repeated across a super-block) with the sum of each block's integers (for Q4_K's mins
// and the offsets of Q4_0/Q5_0), so one format and one scalar reference serve all types.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/dtype.h"

namespace whale {

struct BlockQ8_0 {
  uint16_t d;  // f16
  int8_t q[32];
};
struct BlockQ4_0 {
  uint16_t d;  // f16
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;  // f16
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ4_K {
  uint16_t d, dmin;  // f16
  uint8_t scales[12];
  uint8_t q[128];
};
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;  // f16
};
struct BlockMXFP4 {
  uint8_t e;  // e8m0: the block's scale is 2^(e − 127), halved for the doubled levels
  uint8_t qs[16];
};
static_assert(sizeof(BlockMXFP4) == 17, "ggml block size");
// The doubled e2m1 values (ggml's kvalues_mxfp4) and the scale they are multiplied by.
inline constexpr int8_t kMxfp4Levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
// 2^(e − 128) as float bits, exact for every e (ggml's ggml_e8m0_to_fp32_half; e < 2 subnormal).
inline float mxfp4_scale(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t(0x00200000) << e : uint32_t(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ6_K) == 210,
              "ggml block sizes");

// An activation block: 32 values ≈ d · q.
struct ActQ8 {
  float d;
  int32_t sum;  // Σ q
  int8_t q[32];
};

void dequantize_q8_0(const BlockQ8_0* b, int64_t n, float* out);  // n values
void dequantize_q4_0(const BlockQ4_0* b, int64_t n, float* out);
void dequantize_q5_0(const BlockQ5_0* b, int64_t n, float* out);
void dequantize_q4_k(const BlockQ4_K* b, int64_t n, float* out);
void dequantize_q6_k(const BlockQ6_K* b, int64_t n, float* out);
void dequantize_mxfp4(const BlockMXFP4* b, int64_t n, float* out);

// Reference quantizers (n a multiple of the block size).
void quantize_q8_0(const float* x, int64_t n, BlockQ8_0* out);
void quantize_q4_0(const float* x, int64_t n, BlockQ4_0* out);
void quantize_q5_0(const float* x, int64_t n, BlockQ5_0* out);
void quantize_q4_k(const float* x, int64_t n, BlockQ4_K* out);
void quantize_q6_k(const float* x, int64_t n, BlockQ6_K* out);
// llama.cpp's quantize_row_mxfp4_ref: e from the block's largest magnitude, each value the nearest level.
void quantize_mxfp4(const float* x, int64_t n, BlockMXFP4* out);

// n values with one scale per `span` values (32, or 256 for the K types: see act_scale_span);
// n a multiple of span.
void quantize_act(const float* x, int64_t n, int64_t span, ActQ8* out);
// The same values in separate arrays, the layout the SIMD kernels read: q[n], d[n/32], sum[n/32].
void quantize_act_planar(const float* x, int64_t n, int64_t span, int8_t* q, float* d, int32_t* sum);
// Values per activation scale for products with weights of type w: its block size (32, or 256
// for Q4_K and Q6_K, whose SIMD kernels read one activation scale per super-block).
int64_t act_scale_span(DType w);

// Scalar dot products of a quantized row of n values with quantized activations: the
// reference the SIMD kernels are tested against.
// The 32-value types (dot_q8_0, dot_q4_0, dot_q5_0, dot_mxfp4) are exact per block and add the
// blocks in order with one fused multiply-add each: the VNNI and AMX kernels compute them bit
// for bit (block_columns.h). dot_q4_k and dot_q6_k likewise per super-block (the sum of the
// sub-blocks' products times their scales, and Q4_K's of the mins times the activation sums,
// exact in int32), with x quantized in spans of 256 (act_scale_span): one fma for the scales,
// Q4_K one more for the mins. The VNNI and AMX kernels compute them bit for bit.
float dot_q8_0(const BlockQ8_0* w, const ActQ8* x, int64_t n);
float dot_q4_0(const BlockQ4_0* w, const ActQ8* x, int64_t n);
float dot_q5_0(const BlockQ5_0* w, const ActQ8* x, int64_t n);
float dot_q4_k(const BlockQ4_K* w, const ActQ8* x, int64_t n);
float dot_q6_k(const BlockQ6_K* w, const ActQ8* x, int64_t n);
float dot_mxfp4(const BlockMXFP4* w, const ActQ8* x, int64_t n);

// Level j (0..31) of a Q4_0 / Q5_0 block, before its offset: 0..15 / 0..31; value = d·(level − offset).
inline int level(const BlockQ4_0& b, int j) { return j < 16 ? b.qs[j] & 0xf : b.qs[j - 16] >> 4; }
inline int level(const BlockQ5_0& b, int j) {
  const int low4 = j < 16 ? b.qs[j] & 0xf : b.qs[j - 16] >> 4;
  return low4 | (((b.qh[j / 8] >> (j % 8)) & 1) << 4);
}
template <class Block>
constexpr int kLevelOffset = std::is_same_v<Block, BlockQ4_0> ? 8 : 16;  // Q4_0: 8, Q5_0: 16

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K block.
void q4_k_scale_min(const uint8_t* scales, int j, uint8_t* scale, uint8_t* min);

}  // namespace whale
