// SIMD products of block-quantized weights (Q8_0, Q4_K, Q6_K) with int8-quantized activations,
// one instruction set per Highway target, chosen at run time.
//
// Per block of 32 values: the weights are decoded to int16, multiplied with the activations
// (widened to int16 beforehand) by pairwise multiply-add into int32, then converted and scaled
// in float. Like the float kernels, every (row, token) pair accumulates in a fixed order, so
// batching never changes a token's result.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quant_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "kernels/quant.h"
#include "kernels/quant_simd.h"

HWY_BEFORE_NAMESPACE();
namespace whale {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using D16 = hn::ScalableTag<int16_t>;
using D32 = hn::RepartitionToWide<D16>;
using DF = hn::Rebind<float, D32>;
using V16 = hn::Vec<D16>;
using V32 = hn::Vec<D32>;
using VF = hn::Vec<DF>;
using DU8 = hn::Rebind<uint8_t, D16>;
using DI8 = hn::Rebind<int8_t, D16>;

// Vectors per block of 32 int16 values: every SIMD target has at least 8 lanes; the scalar
// fallback target has one.
constexpr size_t kMaxVecs = HWY_TARGET == HWY_SCALAR ? 32 : 32 / 8;

// Decodes block j (32 values) of a row into int16 vectors wq[0 .. 32/N16); `scaled` says the
// values already include their (integer) sub-block scales.
struct Decoded {
  V16 v[kMaxVecs];
  float min = 0.0f;  // Q4_K: dmin · m of the sub-block (its offset term is min · x.d · Σx.q)
};

HWY_INLINE float h2f(uint16_t h) { return f16_to_f32(h); }

// Σ_k w[k]·x[k] over 32 values as int32 lanes (lane order is fixed per target).
HWY_INLINE V32 dot32(const Decoded& w, const int16_t* x) {
  const D16 d16;
  const D32 d32;
  const size_t N = hn::Lanes(d16);
  V32 s0 = hn::Zero(d32), s1 = hn::Zero(d32);
  for (size_t k = 0; k < 32 / N; ++k) s0 = hn::ReorderWidenMulAccumulate(d32, w.v[k], hn::LoadU(d16, x + k * N), s0, s1);
  return hn::Add(s0, s1);
}

// ---- Q8_0: 32 int8 values per block, one f16 scale.
struct RowQ8_0 {
  const BlockQ8_0* b;
  HWY_INLINE float decode(int64_t j, Decoded& out) const {
    const D16 d16;
    const DI8 d8;
    const size_t N = hn::Lanes(d16);
    for (size_t k = 0; k < 32 / N; ++k) out.v[k] = hn::PromoteTo(d16, hn::LoadU(d8, b[j].q + k * N));
    return h2f(b[j].d);
  }
  static constexpr bool kHasMin = false;
};

// ---- Q4_K: sub-block j % 8 of super-block j / 8: nibbles times the 6-bit scale (folded into
// the int16 values), minus dmin · min · Σx.
struct RowQ4_K {
  const BlockQ4_K* b;
  HWY_INLINE float decode(int64_t j, Decoded& out) const {
    const D16 d16;
    const DU8 du8;
    const size_t N = hn::Lanes(d16);
    const BlockQ4_K& blk = b[j / 8];
    const int sub = int(j % 8);
    uint8_t sc, m;
    q4_k_scale_min(blk.scales, sub, &sc, &m);
    const uint8_t* q = blk.q + (sub / 2) * 32;
    const V16 scale = hn::Set(d16, int16_t(sc));
    for (size_t k = 0; k < 32 / N; ++k) {
      const V16 bytes = hn::BitCast(d16, hn::PromoteTo(hn::RebindToUnsigned<D16>(), hn::LoadU(du8, q + k * N)));
      const V16 nib = (sub & 1) ? hn::ShiftRight<4>(bytes) : hn::And(bytes, hn::Set(d16, 0xf));
      out.v[k] = hn::Mul(nib, scale);
    }
    out.min = h2f(blk.dmin) * float(m);
    return h2f(blk.d);
  }
  static constexpr bool kHasMin = true;
};

// ---- Q6_K: positions 32·(j%8) .. +32 of super-block j / 8; (6-bit value − 32) times the int8
// scale of each 16 values (folded into the int16 values).
struct RowQ6_K {
  const BlockQ6_K* b;
  HWY_INLINE float decode(int64_t j, Decoded& out) const {
    const D16 d16;
    const DU8 du8;
    const size_t N = hn::Lanes(d16);
    const BlockQ6_K& blk = b[j / 8];
    const int p0 = int(j % 8) * 32, half = p0 / 128, g = (p0 % 128) / 32;
    const uint8_t* ql = blk.ql + half * 64 + 32 * (g & 1);
    const uint8_t* qh = blk.qh + half * 32;
    for (size_t k = 0; k < 32 / N; ++k) {
      const auto du16 = hn::RebindToUnsigned<D16>();
      const auto lo = hn::PromoteTo(du16, hn::LoadU(du8, ql + k * N));
      const auto hi = hn::PromoteTo(du16, hn::LoadU(du8, qh + k * N));
      const auto low4 = g >= 2 ? hn::ShiftRight<4>(lo) : hn::And(lo, hn::Set(du16, 0xf));
      const auto high2 = hn::And(hn::ShiftRightSame(hi, 2 * g), hn::Set(du16, 3));
      const V16 q = hn::Sub(hn::BitCast(d16, hn::Or(low4, hn::ShiftLeft<4>(high2))), hn::Set(d16, 32));
      // The scale of the 16 values this vector covers (vectors of 32 lanes cover two groups).
      const int first = (p0 + int(k * N)) / 16;
      V16 scale = hn::Set(d16, int16_t(blk.scales[first]));
      if (N == 32) scale = hn::IfThenElse(hn::FirstN(d16, 16), scale, hn::Set(d16, int16_t(blk.scales[first + 1])));
      out.v[k] = hn::Mul(q, scale);
    }
    return h2f(blk.d);
  }
  static constexpr bool kHasMin = false;
};

template <int T, class Row>
HWY_INLINE void tile(const Row& row, const QuantGemmArgs& a, int64_t i, int64_t t) {
  const DF df;
  const int64_t blocks = a.cols / 32;
  VF acc[T];
  float mins[T];
  for (int j = 0; j < T; ++j) {
    acc[j] = hn::Zero(df);
    mins[j] = 0.0f;
  }
  Decoded w;
  for (int64_t b = 0; b < blocks; ++b) {
    const float wd = row.decode(b, w);
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
      const int64_t tok = t + j;
      const V32 isum = dot32(w, a.x.q + tok * a.x.ld_values + b * 32);
      acc[j] = hn::MulAdd(hn::ConvertTo(df, isum), hn::Set(df, wd * a.x.d[tok * a.x.ld_blocks + b]), acc[j]);
      if constexpr (Row::kHasMin) mins[j] += w.min * a.x.d[tok * a.x.ld_blocks + b] * float(a.x.sum[tok * a.x.ld_blocks + b]);
    }
  }
  for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + i] = hn::GetLane(hn::SumOfLanes(df, acc[j])) - mins[j];
}

template <class Row, class Make>
void gemm(const QuantGemmArgs& a, Make make) {
  for (int64_t i = 0; i < a.r1 - a.r0; ++i) {
    const Row row = make(a.r0 + i);
    for (int64_t t = 0; t < a.n_tok; t += 4) {
      switch (std::min<int64_t>(4, a.n_tok - t)) {
        case 1: tile<1>(row, a, i, t); break;
        case 2: tile<2>(row, a, i, t); break;
        case 3: tile<3>(row, a, i, t); break;
        default: tile<4>(row, a, i, t); break;
      }
    }
  }
}

void QuantGemmRows(const QuantGemmArgs& a) {
  auto at = [&](int64_t r) { return a.data + size_t(r) * a.row_bytes; };
  switch (a.dtype) {
    case DType::Q8_0:
      return gemm<RowQ8_0>(a, [&](int64_t r) { return RowQ8_0{reinterpret_cast<const BlockQ8_0*>(at(r))}; });
    case DType::Q4_K:
      return gemm<RowQ4_K>(a, [&](int64_t r) { return RowQ4_K{reinterpret_cast<const BlockQ4_K*>(at(r))}; });
    case DType::Q6_K:
      return gemm<RowQ6_K>(a, [&](int64_t r) { return RowQ6_K{reinterpret_cast<const BlockQ6_K*>(at(r))}; });
    default: return;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(QuantGemmRows);
void quant_gemm_rows_simd(const QuantGemmArgs& args) { HWY_DYNAMIC_DISPATCH(QuantGemmRows)(args); }
}  // namespace whale
#endif
