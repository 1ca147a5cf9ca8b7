// SwiGLU forward and backward for training, compiled per instruction set by Highway (see swiglu.h).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/swiglu_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <hwy/contrib/math/math-inl.h>

#include <algorithm>

#include "kernels/swiglu.h"

HWY_BEFORE_NAMESPACE();
namespace whale {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// σ(g) = 1 / (1 + e^−g). Highway's Exp is defined up to 104, so −g is clamped at 88: below
// g = −88 silu(g) is below 1e-36 either way (the scalar formula reaches −0 at about −88.7).
HWY_INLINE VF Sigmoid(DF d, VF g) {
  const VF e = hn::Exp(d, hn::Min(hn::Neg(g), hn::Set(d, 88.0f)));
  return hn::Div(hn::Set(d, 1.0f), hn::Add(hn::Set(d, 1.0f), e));
}

void SwigluForward(const float* g, const float* u, int64_t n, float* h) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const VF gv = hn::LoadU(d, g + i);
    hn::StoreU(hn::Mul(hn::Mul(gv, Sigmoid(d, gv)), hn::LoadU(d, u + i)), d, h + i);
  }
  if (i < n) {  // the tail through a padded buffer (never reads or writes past n)
    HWY_ALIGN float gb[HWY_MAX_BYTES / sizeof(float)] = {}, ub[HWY_MAX_BYTES / sizeof(float)] = {};
    const size_t r = size_t(n - i);
    for (size_t j = 0; j < r; ++j) gb[j] = g[i + int64_t(j)], ub[j] = u[i + int64_t(j)];
    const VF gv = hn::Load(d, gb);
    hn::Store(hn::Mul(hn::Mul(gv, Sigmoid(d, gv)), hn::Load(d, ub)), d, gb);
    for (size_t j = 0; j < r; ++j) h[i + int64_t(j)] = gb[j];
  }
}

HWY_INLINE void BackwardVec(DF d, VF gv, VF uv, VF dhv, VF& dg, VF& du) {
  const VF one = hn::Set(d, 1.0f);
  const VF sg = Sigmoid(d, gv);
  du = hn::MulAdd(dhv, hn::Mul(gv, sg), du);
  const VF dsilu = hn::Mul(sg, hn::MulAdd(gv, hn::Sub(one, sg), one));
  dg = hn::MulAdd(hn::Mul(dhv, uv), dsilu, dg);
}

void SwigluBackward(const float* g, const float* u, const float* dh, int64_t n, float* dg, float* du) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    VF dgv = hn::LoadU(d, dg + i), duv = hn::LoadU(d, du + i);
    BackwardVec(d, hn::LoadU(d, g + i), hn::LoadU(d, u + i), hn::LoadU(d, dh + i), dgv, duv);
    hn::StoreU(dgv, d, dg + i);
    hn::StoreU(duv, d, du + i);
  }
  if (i < n) {
    constexpr size_t kMax = HWY_MAX_BYTES / sizeof(float);
    HWY_ALIGN float b[5][kMax] = {};
    const size_t r = size_t(n - i);
    for (size_t j = 0; j < r; ++j) {
      const int64_t k = i + int64_t(j);
      b[0][j] = g[k], b[1][j] = u[k], b[2][j] = dh[k], b[3][j] = dg[k], b[4][j] = du[k];
    }
    VF dgv = hn::Load(d, b[3]), duv = hn::Load(d, b[4]);
    BackwardVec(d, hn::Load(d, b[0]), hn::Load(d, b[1]), hn::Load(d, b[2]), dgv, duv);
    hn::Store(dgv, d, b[3]);
    hn::Store(duv, d, b[4]);
    for (size_t j = 0; j < r; ++j) dg[i + int64_t(j)] = b[3][j], du[i + int64_t(j)] = b[4][j];
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(SwigluForward);
HWY_EXPORT(SwigluBackward);

void swiglu_forward_simd(const float* g, const float* u, int64_t n, float* h) {
  HWY_DYNAMIC_DISPATCH(SwigluForward)(g, u, n, h);
}
void swiglu_backward_simd(const float* g, const float* u, const float* dh, int64_t n, float* dg, float* du) {
  HWY_DYNAMIC_DISPATCH(SwigluBackward)(g, u, dh, n, dg, du);
}

namespace {
constexpr int64_t kChunk = 4096;  // elements per task: whole vectors, enough work to be worth a hand-off
}

void swiglu_forward(const float* g, const float* u, int64_t n, float* h, ThreadPool& pool) {
  pool.parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
    const int64_t i0 = c0 * kChunk, i1 = std::min(n, c1 * kChunk);
    swiglu_forward_simd(g + i0, u + i0, i1 - i0, h + i0);
  });
}

void swiglu_backward(const float* g, const float* u, const float* dh, int64_t n, float* dg, float* du,
                     ThreadPool& pool) {
  pool.parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
    const int64_t i0 = c0 * kChunk, i1 = std::min(n, c1 * kChunk);
    swiglu_backward_simd(g + i0, u + i0, dh + i0, i1 - i0, dg + i0, du + i0);
  });
}

}  // namespace whale
#endif  // HWY_ONCE
