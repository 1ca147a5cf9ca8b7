// Plain scalar versions of the matrix kernels: the definition the SIMD kernels are tested
// against (tests/kernels_test.cpp), written for clarity rather than speed.
#pragma once
#include <cstdint>

#include "kernels/weight.h"

namespace whale::reference {

float dot_row(const Weight& w, int64_t r, const float* x);  // Σ_c W[r][c] · x[c]
void matmul_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n_tok, float* y,
                 int64_t ldy);
void matvec_transposed(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y);

}  // namespace whale::reference
