// SIMD kernels for block-quantized weights (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K) times int8 activations.
// matmul.cpp quantizes the activations (quantize_act_planar_simd below) and splits rows across
// threads.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace whale {

// Activations of n_tok tokens in blocks of 32: value ≈ d · q.
struct ActArgs {
  const int8_t* q;     // [n_tok][ld_values] quantized values
  const float* d;      // [n_tok][ld_blocks] block scales
  const int32_t* sum;  // [n_tok][ld_blocks] Σ q per block
  int64_t ld_values, ld_blocks;
};

struct QuantGemmArgs {
  DType dtype;
  const uint8_t* data;
  size_t row_bytes;
  int64_t cols;
  int64_t r0, r1;
  ActArgs x;
  int64_t n_tok;
  float* y;  // y[t · ldy + (r − r0)]
  int64_t ldy;
  // From kAmxMinTokens (amx.h) on, products take AMX where the CPU has it (the same numbers);
  // false keeps the VNNI kernel (benchmarks compare the two).
  bool amx = true;
};

void quant_gemm_rows_simd(const QuantGemmArgs& args);

// Whether the kernels chosen on this machine multiply with AVX-512 VNNI; Q8_0, Q4_0, Q5_0 and
// MXFP4 products then equal their scalar references (quant.h) bit for bit, on VNNI or AMX alike.
bool quant_simd_vnni();
// Whether the kernels chosen on this machine (AVX-512 VNNI or AVX2) compute every type's scalar
// reference (quant.h) bit for bit.
bool quant_simd_exact();

// quant.h's quantize_act_planar (the scalar reference), vectorized: bitwise the same output.
void quantize_act_planar_simd(const float* x, int64_t n, int64_t span, int8_t* q, float* d, int32_t* sum);

}  // namespace whale
