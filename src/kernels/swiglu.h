// SwiGLU for training, vectorized (swiglu_simd.cpp, Highway with run-time dispatch):
//   forward   h = silu(g) ⊙ u
//   backward  du += dh ⊙ silu(g),  dg += dh ⊙ u ⊙ silu'(g),  silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
// The plain scalar versions (train/grad_ops.h swiglu_forward/swiglu_backward) define what these
// compute; they differ by a few ulp (exp's rounding, fused multiply-adds).
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace whale {

void swiglu_forward_simd(const float* g, const float* u, int64_t n, float* h);
void swiglu_backward_simd(const float* g, const float* u, const float* dh, int64_t n, float* dg, float* du);

// The same split across the pool in chunks of whole vectors.
void swiglu_forward(const float* g, const float* u, int64_t n, float* h, ThreadPool& pool);
void swiglu_backward(const float* g, const float* u, const float* dh, int64_t n, float* dg, float* du,
                     ThreadPool& pool);

}  // namespace whale
