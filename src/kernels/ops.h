// Elementwise and small reductions used by the forward pass, all in float32.
#pragma once
#include <cstdint>

namespace whale {

// out = w ⊙ x / sqrt(mean(x²) + eps)   (out may alias x)
void rmsnorm(const float* x, const float* w, int64_t n, float eps, float* out);

// In-place softmax over n values; -inf entries get probability 0.
void softmax_inplace(float* x, int64_t n);

// Rotates interleaved pairs (x[2i], x[2i+1]) by the angle whose cos/sin are given:
// DeepSeek's RoPE layout (complex multiplication on consecutive pairs).
void rope_interleaved(float* x, const float* cos, const float* sin, int64_t n_pairs);

// y += a · x
void axpy(float a, const float* x, float* y, int64_t n);

float dot(const float* a, const float* b, int64_t n);

}  // namespace whale
