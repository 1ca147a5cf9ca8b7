// Forward and backward passes of the building blocks of training, in float32, llm.c style:
// every function documents the shapes of its buffers, backward functions ACCUMULATE into
// their gradient outputs (d... +=), so a value used twice simply receives both gradients.
// Matrix products reuse the inference GEMM (fixed reduction order, thread pool); the rest
// are plain loops checked against finite differences in tests/train_grad_test.cpp.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace whale::train {

// y [N, out] = x [N, in] · Wᵀ          W [out, in]
void linear_forward(const float* W, int64_t out, int64_t in, const float* x, int64_t N, float* y, ThreadPool& pool);
// dx [N, in] += dy [N, out] · W   (skipped when dx is null);   dW [out, in] += dyᵀ · x
void linear_backward(const float* W, int64_t out, int64_t in, const float* x, const float* dy, int64_t N, float* dx,
                     float* dW, ThreadPool& pool);

// y [N, n] = w ⊙ x / rms(x) per row; inv_rms [N] saved for the backward pass (w null: no weight).
void rmsnorm_forward(const float* x, const float* w, int64_t N, int64_t n, float eps, float* y, float* inv_rms,
                     ThreadPool& pool);
// dx [N, n] += ∂/∂x,  dw [n] += Σ_rows dy ⊙ x·inv   (dw null when w is null)
void rmsnorm_backward(const float* x, const float* w, const float* inv_rms, const float* dy, int64_t N, int64_t n,
                      float* dx, float* dw,
                      ThreadPool& pool);

// Interleaved-pair rotation (DeepSeek's RoPE layout) and its transpose, in place.
void rope_forward(float* x, const float* cos, const float* sin, int64_t n_pairs);
void rope_backward(float* dx, const float* cos, const float* sin, int64_t n_pairs);

// h [n] = silu(g) ⊙ u;  backward: dg, du += from dh.
void swiglu_forward(const float* g, const float* u, int64_t n, float* h);
void swiglu_backward(const float* g, const float* u, const float* dh, int64_t n, float* dg, float* du);

// Causal attention of one head over T positions, rows strided:
//   S = scale · Q Kᵀ (j ≤ i),  P = softmax_rows(S) [T, T],  O = P V
// q/k rows have dk values (stride ldq/ldk), v rows dv values (stride ldv), o stride ldo.
void attention_forward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                       int64_t T, int64_t dk, int64_t dv, float scale, float* P, float* o, int64_t ldo);
// dq, dk, dv (same strides as q, k, v) += from do; P as saved by the forward pass.
void attention_backward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                        const float* P, const float* d_o, int64_t ldo, int64_t T, int64_t dk, int64_t dv, float scale,
                        float* dq, float* dkk, float* dvv);
// Plain scalar versions (the definition the GEMM-based ones are tested against).
void attention_forward_reference(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                       int64_t T, int64_t dk, int64_t dv, float scale, float* P, float* o, int64_t ldo);
// dq, dk, dv (same strides as q, k, v) += from do; P as saved by the forward pass.
void attention_backward_reference(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                        const float* P, const float* d_o, int64_t ldo, int64_t T, int64_t dk, int64_t dv, float scale,
                        float* dq, float* dkk, float* dvv);

// Log-probability of each row's target: logp[r] = logits[r][target[r]] - logsumexp(logits[r]).
// logits [R, V] is overwritten with softmax(logits) for the backward pass.
void log_softmax_target(float* logits, const int32_t* target, int64_t R, int64_t V, float* logp, ThreadPool& pool);
// dlogits [R, V] = dlogp[r] · (onehot(target) - softmax): probs as left by log_softmax_target.
void log_softmax_target_backward(const float* probs, const int32_t* target, const float* dlogp, int64_t R, int64_t V,
                                 float* dlogits, ThreadPool& pool);

}  // namespace whale::train
