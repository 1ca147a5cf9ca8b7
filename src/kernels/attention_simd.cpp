// weighted_rows (attention.h), compiled per instruction set by Highway.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/attention.h"
#include "kernels/ops.h"

HWY_BEFORE_NAMESPACE();
namespace whale {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Heads per register tile: one vector of columns times kHeads accumulators, so each row's
// vector is loaded once for kHeads fused multiply-adds.
constexpr int64_t kHeads = 8;

template <int64_t G>
HWY_INLINE void HeadTile(const float* p, int64_t n_heads, int64_t h0, const float* const* rows, int64_t n_rows,
                         int64_t c, float* out, int64_t ld_out) {
  const DF d;
  VF acc[G];
  for (int64_t g = 0; g < G; ++g) acc[g] = hn::Zero(d);
  for (int64_t j = 0; j < n_rows; ++j) {
    const VF x = hn::LoadU(d, rows[j] + c);
    const float* pj = p + j * n_heads + h0;
    for (int64_t g = 0; g < G; ++g) acc[g] = hn::MulAdd(hn::Set(d, pj[g]), x, acc[g]);
  }
  for (int64_t g = 0; g < G; ++g) hn::StoreU(acc[g], d, out + (h0 + g) * ld_out + c);
}

void WeightedRows(const float* p, int64_t n_heads, const float* const* rows, int64_t n_rows, int64_t c0, int64_t c1,
                  float* out, int64_t ld_out) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  int64_t c = c0;
  for (; c + L <= c1; c += L) {
    int64_t h = 0;
    for (; h + kHeads <= n_heads; h += kHeads) HeadTile<kHeads>(p, n_heads, h, rows, n_rows, c, out, ld_out);
    for (; h < n_heads; ++h) HeadTile<1>(p, n_heads, h, rows, n_rows, c, out, ld_out);
  }
  if (c < c1) weighted_rows_reference(p, n_heads, rows, n_rows, c, c1, out, ld_out);  // a partial vector
}

// dot_rows in tiles of R rows × G heads: per column vector R row loads and G query loads feed
// R·G multiply-adds (one load per multiply-add with a single row: 24 µs for 16 heads × 64 rows
// × 576 on Zen 4; 13 µs this way, about one 512-bit multiply-add per cycle).
template <int R, int G>
HWY_INLINE void DotTile(const float* q, int64_t ldq, const float* const* rows, int64_t n_cols, float scale, float* out,
                        int64_t ld_out) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  VF acc[R][G];
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < G; ++g) acc[r][g] = hn::Zero(d);
  int64_t c = 0;
  for (; c + L <= n_cols; c += L) {
    VF x[R];
    for (int r = 0; r < R; ++r) x[r] = hn::LoadU(d, rows[r] + c);
    for (int g = 0; g < G; ++g) {
      const VF qv = hn::LoadU(d, q + g * ldq + c);
      for (int r = 0; r < R; ++r) acc[r][g] = hn::MulAdd(qv, x[r], acc[r][g]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < G; ++g) {
      float sum = hn::GetLane(hn::SumOfLanes(d, acc[r][g]));
      for (int64_t k = c; k < n_cols; ++k) sum += q[g * ldq + k] * rows[r][k];  // a partial vector
      out[g * ld_out + r] = sum * scale;
    }
}

template <int R>
HWY_INLINE void DotRowTile(const float* q, int64_t n_heads, int64_t ldq, const float* const* rows, int64_t n_cols,
                           float scale, float* out, int64_t ld_out) {
  int64_t h = 0;
  for (; h + 4 <= n_heads; h += 4) DotTile<R, 4>(q + h * ldq, ldq, rows, n_cols, scale, out + h * ld_out, ld_out);
  for (; h < n_heads; ++h) DotTile<R, 1>(q + h * ldq, ldq, rows, n_cols, scale, out + h * ld_out, ld_out);
}

void DotRows(const float* q, int64_t n_heads, int64_t ldq, const float* const* rows, int64_t n_rows, int64_t n_cols,
             float scale, float* out, int64_t ld_out) {
  int64_t j = 0;
  for (; j + 4 <= n_rows; j += 4) {
    // The cache rows are rarely in cache (a token's weights pass between two visits of a layer)
    // and each is a separate stream (paged): fetch the next tile's rows while this one is scored.
    for (int64_t k = j + 4; k < std::min(n_rows, j + 8); ++k)
      for (int64_t c = 0; c < n_cols; c += 64 / int64_t(sizeof(float))) hwy::Prefetch(rows[k] + c);
    DotRowTile<4>(q, n_heads, ldq, rows + j, n_cols, scale, out + j, ld_out);
  }
  for (; j < n_rows; ++j) DotRowTile<1>(q, n_heads, ldq, rows + j, n_cols, scale, out + j, ld_out);
}

void Softmax(float* x, int64_t n) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  if (n < L) return softmax_inplace(x, n);  // not one full vector
  VF vmax = hn::LoadU(d, x);
  for (int64_t i = 0; i + L <= n; i += L) vmax = hn::Max(vmax, hn::LoadU(d, x + i));
  float mx = hn::GetLane(hn::MaxOfLanes(d, vmax));
  for (int64_t i = n / L * L; i < n; ++i) mx = std::max(mx, x[i]);
  if (std::isinf(mx) && mx < 0) {  // everything masked: all zero, as the reference defines it
    std::fill(x, x + n, 0.0f);
    return;
  }
  // x − max ≤ 0; Highway's Exp is defined from −FLT_MAX (to 104), so a masked −inf is clamped
  // there (its exp is 0 either way).
  const VF vmx = hn::Set(d, mx), lowest = hn::Set(d, std::numeric_limits<float>::lowest());
  VF vsum = hn::Zero(d);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const VF e = hn::Exp(d, hn::Max(hn::Sub(hn::LoadU(d, x + i), vmx), lowest));
    hn::StoreU(e, d, x + i);
    vsum = hn::Add(vsum, e);
  }
  double sum = double(hn::GetLane(hn::SumOfLanes(d, vsum)));
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += double(x[i]);
  }
  // An all-masked row whose maximum came back as −FLT_MAX rather than −inf (some targets'
  // MaxOfLanes start from the lowest finite value): every exp is 0.
  if (sum == 0) {
    std::fill(x, x + n, 0.0f);
    return;
  }
  const float inv = float(1.0 / sum);
  const VF vinv = hn::Set(d, inv);
  i = 0;
  for (; i + L <= n; i += L) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), vinv), d, x + i);
  for (; i < n; ++i) x[i] *= inv;
}

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(WeightedRows);
HWY_EXPORT(DotRows);
HWY_EXPORT(Softmax);
void dot_rows(const float* q, int64_t n_heads, int64_t ldq, const float* const* rows, int64_t n_rows, int64_t n_cols,
              float scale, float* out, int64_t ld_out) {
  HWY_DYNAMIC_DISPATCH(DotRows)(q, n_heads, ldq, rows, n_rows, n_cols, scale, out, ld_out);
}
void dot_rows_reference(const float* q, int64_t n_heads, int64_t ldq, const float* const* rows, int64_t n_rows,
                        int64_t n_cols, float scale, float* out, int64_t ld_out) {
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < n_rows; ++j) {
      float acc = 0.0f;
      for (int64_t c = 0; c < n_cols; ++c) acc += q[h * ldq + c] * rows[j][c];
      out[h * ld_out + j] = acc * scale;
    }
}
void softmax(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(Softmax)(x, n); }

void weighted_rows(const float* p, int64_t n_heads, const float* const* rows, int64_t n_rows, int64_t c0, int64_t c1,
                   float* out, int64_t ld_out) {
  HWY_DYNAMIC_DISPATCH(WeightedRows)(p, n_heads, rows, n_rows, c0, c1, out, ld_out);
}

void weighted_rows_reference(const float* p, int64_t n_heads, const float* const* rows, int64_t n_rows, int64_t c0,
                             int64_t c1, float* out, int64_t ld_out) {
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t c = c0; c < c1; ++c) {
      float acc = 0.0f;
      for (int64_t j = 0; j < n_rows; ++j) acc = std::fma(p[j * n_heads + h], rows[j][c], acc);
      out[h * ld_out + c] = acc;
    }
}
}  // namespace whale
#endif
