// Dense float32 matrix product for training: C[M, N] (+)= A[M, K] · B[K, N], row-major with
// leading dimensions (A optionally stored transposed, for weight gradients Xᵀ·dY). The SIMD
// kernel (sgemm_simd.cpp) keeps a register tile of 6 rows × 4 vectors of C (24 accumulators;
// 6 × 2 and 6 × 1 at the right edge) and streams K: per k it broadcasts six A values and loads
// four B vectors, so each FMA needs under half a load (the dot-product kernels of gemm_simd.cpp
// need more than one).
// Long K runs in blocks (128 when a thread's call has enough rows to copy panels of B into an
// L1-sized buffer, 256 otherwise); the running sums wait in C between blocks, which continues
// each sum in the same order.
// Every C element sums its K products in order k = 0, 1, ..., so results do not depend on the
// thread count or on the tile an element falls in. sgemm_reference is the plain definition.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace whale {

struct SgemmArgs {
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  bool accumulate;        // C += A·B instead of C = A·B
  bool trans_a = false;   // A is stored transposed: element (m, k) at A[k·lda + m] (C = Aᵀ·B)
  bool resume = false;    // internal (K blocking): C holds the sum over the earlier k, continue it
};

void sgemm(const SgemmArgs& a, ThreadPool& pool);
void sgemm_reference(const SgemmArgs& a);

// Rows [m0, m1) of the product (the per-thread piece).
void sgemm_rows_simd(const SgemmArgs& a, int64_t m0, int64_t m1);

}  // namespace whale
