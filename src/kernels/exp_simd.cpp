// exp_shifted, compiled per instruction set by Highway (see exp.h): the operations of
// exp_nonpositive, lane by lane, so every target gives the scalar twin's bits.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/exp_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/exp.h"

HWY_BEFORE_NAMESPACE();
namespace whale {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void ExpShifted(const float* x, float shift, int64_t n, float* out) {
  using namespace exp_detail;
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const int64_t L = int64_t(hn::Lanes(d));
  const auto lowest = hn::Set(d, kLowest), log2e = hn::Set(d, kLog2e), round = hn::Set(d, kRound);
  const auto ln2_hi = hn::Set(d, kLn2Hi), ln2_lo = hn::Set(d, kLn2Lo), one = hn::Set(d, 1.0f);
  const auto s = hn::Set(d, shift);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const auto v = hn::Sub(hn::LoadU(d, x + i), s);
    const auto keep = hn::Ge(v, lowest);  // false for −inf and below −86
    const auto xv = hn::Max(v, lowest);   // (finite arithmetic in the dropped lanes)
    const auto k = hn::Sub(hn::Add(hn::Mul(xv, log2e), round), round);
    const auto r = hn::Sub(hn::Sub(xv, hn::Mul(k, ln2_hi)), hn::Mul(k, ln2_lo));
    const auto z = hn::Mul(r, r);
    auto y = hn::Set(d, kP[0]);
    for (int p = 1; p < 6; ++p) y = hn::Add(hn::Mul(y, r), hn::Set(d, kP[p]));
    y = hn::Add(hn::Add(hn::Mul(y, z), r), one);
    const auto scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, k), hn::Set(di, 127))));
    hn::StoreU(hn::IfThenElseZero(keep, hn::Mul(y, scale)), d, out + i);
  }
  for (; i < n; ++i) out[i] = exp_nonpositive(x[i] - shift);
}

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(ExpShifted);

void exp_shifted(const float* x, float shift, int64_t n, float* out) { HWY_DYNAMIC_DISPATCH(ExpShifted)(x, shift, n, out); }

}  // namespace whale
#endif
