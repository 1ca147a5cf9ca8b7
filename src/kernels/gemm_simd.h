// SIMD matrix-product kernels with run-time instruction-set dispatch (Google Highway).
// matmul.cpp splits the work across threads and calls these per row range; the plain scalar
// versions in reference.cpp define what they must compute.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace whale {

// y[t * ldy + (r - r0)] = Σ_c W[r][c] · x[t * ldx + c], r in [r0, r1), t in [0, n_tok).
struct GemmArgs {
  DType dtype;              // F32, BF16, F16, F8_E4M3 or F4_E2M1
  const uint8_t* data;      // row-major weights
  size_t row_bytes;
  int64_t cols;
  int64_t r0, r1;
  const float* x;
  int64_t ldx, n_tok;
  float* y;
  int64_t ldy;
  // FP8 block scales (nullptr otherwise): W_real = W · scale[(r / block_rows) · scale_cols + c / block_cols]
  const float* scale = nullptr;
  int64_t block_rows = 128, block_cols = 128, scale_cols = 0;
  float scale_factor = 1.0f;  // FP8: 256, FP4: 2^14, undoing the e4m3 / e2m1 -> f16 exponent shift
};

void gemm_rows_simd(const GemmArgs& args);

// The instruction set the dispatcher chose on this machine, e.g. "AVX3" or "AVX2".
const char* simd_target_name();

// Σ p[0..n): streams memory with the widest vectors (the bandwidth probe of `whale bench`).
float simd_read_sum(const float* p, size_t n);

}  // namespace whale
