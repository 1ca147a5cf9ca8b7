// weighted_rows (attention.h), compiled per instruction set by Highway.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention.h"

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

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(WeightedRows);

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
