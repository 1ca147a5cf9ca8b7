// SIMD matrix products for weights read with float32 activations (F32, BF16, F16, FP8 e4m3),
// compiled once per instruction set by Highway and picked at run time.
//
// y[t][r] = Σ_c W[r][c] · x[t][c]. Every (row, token) pair owns its accumulators, which walk
// the columns in the same order whatever tile the pair is computed in and are reduced the same
// way, so a token's result is bit-identical alone or in a batch.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/gemm_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "kernels/gemm_simd.h"

HWY_BEFORE_NAMESPACE();
namespace whale {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// A weight row as float vectors: operator() converts Lanes(DF) elements starting at c,
// at(i) one element (for the tail of a row).
struct RowF32 {
  const float* p;
  HWY_INLINE VF operator()(DF d, size_t c) const { return hn::LoadU(d, p + c); }
  float at(size_t i) const { return p[i]; }
};
struct RowBF16 {
  const uint16_t* p;
  HWY_INLINE VF operator()(DF d, size_t c) const {
    const hn::Rebind<uint16_t, DF> d16;
    const hn::RebindToUnsigned<DF> du32;
    return hn::BitCast(d, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(d16, p + c))));
  }
  float at(size_t i) const { return bf16_to_f32(p[i]); }
};
struct RowF16 {
  const hwy::float16_t* p;
  HWY_INLINE VF operator()(DF d, size_t c) const {
    const hn::Rebind<hwy::float16_t, DF> d16;
    return hn::PromoteTo(d, hn::LoadU(d16, p + c));
  }
  float at(size_t i) const {
    uint16_t h;
    std::memcpy(&h, p + i, 2);
    return f16_to_f32(h);
  }
};
// e4m3 -> f16 bits: the 7 magnitude bits shifted left by 7 form an f16 equal to 2^-8 times the
// value (subnormals included); the sign goes to bit 15. The 2^8 is folded into the block scale.
struct RowFP8 {
  const uint8_t* p;
  HWY_INLINE VF operator()(DF d, size_t c) const {
    const hn::Rebind<uint8_t, DF> d8;
    const hn::Rebind<uint16_t, DF> d16;
    const hn::Rebind<hwy::float16_t, DF> dh;
    const auto b = hn::PromoteTo(d16, hn::LoadU(d8, p + c));
    const auto bits =
        hn::Or(hn::ShiftLeft<7>(hn::And(b, hn::Set(d16, 0x7f))), hn::ShiftLeft<8>(hn::And(b, hn::Set(d16, 0x80))));
    return hn::PromoteTo(d, hn::BitCast(dh, bits));
  }
  float at(size_t i) const { return fp8_e4m3_to_f32(p[i]) * (1.0f / 256.0f); }
};

// e2m1 -> f16 bits (dtype.h): 2^-14 times the value, folded into the block scale like FP8's.
// Two codes per byte, element 2k in the low nibble; rows start at a block of 32, so c is even.
struct RowFP4 {
  const uint8_t* p;
  HWY_INLINE VF operator()(DF d, size_t c) const {
#if HWY_TARGET == HWY_SCALAR  // one lane: no byte to split
    return hn::Set(d, at(c));
#else
    const hn::Rebind<uint8_t, DF> d8;
    const hn::Rebind<uint16_t, DF> d16;
    const hn::Rebind<hwy::float16_t, DF> dh;
    const size_t N = hn::Lanes(d);
    // N/2 bytes -> N codes: low nibbles and high nibbles interleaved (element 2k is the low one).
    HWY_ALIGN uint8_t buf[HWY_MAX_BYTES / sizeof(float)] = {};
    std::memcpy(buf, p + c / 2, N / 2);
    const auto bytes = hn::Load(d8, buf);
    const auto codes = hn::InterleaveLower(d8, hn::And(bytes, hn::Set(d8, 15)), hn::ShiftRight<4>(bytes));
    const auto w = hn::PromoteTo(d16, codes);
    const auto bits = hn::Or(hn::ShiftLeft<9>(hn::And(w, hn::Set(d16, 7))), hn::ShiftLeft<12>(hn::And(w, hn::Set(d16, 8))));
    return hn::PromoteTo(d, hn::BitCast(dh, bits));
#endif
  }
  float at(size_t i) const { return fp4_e2m1_to_f32((p[i / 2] >> (4 * (i % 2))) & 15) * (1.0f / 16384.0f); }
};

// acc[t][u] += row[c] · x_t[c] over columns [c0, c1): full groups of 4 vectors go to the four
// accumulators u (independent chains, so loads and FMAs overlap), remaining full vectors and
// the zero-padded tail to acc[t][0]. One row at a time keeps the weights a single sequential
// memory stream; every token of a tile reuses each converted weight vector.
template <int T, class Row>
HWY_INLINE void accumulate(const Row& row, const float* const* xs, size_t c0, size_t c1, VF (&acc)[T][4]) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t c = c0;
  for (; c + 4 * N <= c1; c += 4 * N) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const VF w = row(d, c + u * N);
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) acc[t][u] = hn::MulAdd(w, hn::LoadU(d, xs[t] + c + u * N), acc[t][u]);
    }
  }
  for (; c + N <= c1; c += N) {
    const VF w = row(d, c);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) acc[t][0] = hn::MulAdd(w, hn::LoadU(d, xs[t] + c), acc[t][0]);
  }
  if (c < c1) {
    const size_t n = c1 - c;
    HWY_ALIGN float wbuf[HWY_MAX_BYTES / sizeof(float)];
    HWY_ALIGN float xbuf[HWY_MAX_BYTES / sizeof(float)];
    for (size_t i = 0; i < N; ++i) wbuf[i] = i < n ? row.at(c + i) : 0.0f;
    const VF w = hn::Load(d, wbuf);
    for (int t = 0; t < T; ++t) {
      for (size_t i = 0; i < N; ++i) xbuf[i] = i < n ? xs[t][c + i] : 0.0f;
      acc[t][0] = hn::MulAdd(w, hn::Load(d, xbuf), acc[t][0]);
    }
  }
}

template <int T>
HWY_INLINE VF combine(const VF (&acc)[T][4], int t) {
  return hn::Add(hn::Add(acc[t][0], acc[t][1]), hn::Add(acc[t][2], acc[t][3]));
}

// Row r (r - r0 == `i` in the output) × T tokens from token t.
template <int T, class Row>
HWY_INLINE void tile(const Row& row, const GemmArgs& a, int64_t i, int64_t t) {
  const DF d;
  const float* xs[T];
  for (int j = 0; j < T; ++j) xs[j] = a.x + (t + j) * a.ldx;
  VF acc[T][4];
  VF total[T];
  for (int j = 0; j < T; ++j) {
    total[j] = hn::Zero(d);
    for (int u = 0; u < 4; ++u) acc[j][u] = hn::Zero(d);
  }
  if (!a.scale) {
    accumulate<T>(row, xs, 0, size_t(a.cols), acc);
    for (int j = 0; j < T; ++j) total[j] = combine(acc, j);
  } else {  // FP8: each column block's partial sum is scaled before it is added
    const float* s = a.scale + ((a.r0 + i) / a.block_rows) * a.scale_cols;
    for (int64_t c0 = 0, b = 0; c0 < a.cols; c0 += a.block_cols, ++b) {
      for (int j = 0; j < T; ++j)
        for (int u = 0; u < 4; ++u) acc[j][u] = hn::Zero(d);
      accumulate<T>(row, xs, size_t(c0), size_t(std::min(a.cols, c0 + a.block_cols)), acc);
      const VF scale = hn::Set(d, s[b] * a.scale_factor);
      for (int j = 0; j < T; ++j) total[j] = hn::MulAdd(combine(acc, j), scale, total[j]);
    }
  }
  for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + i] = hn::GetLane(hn::SumOfLanes(d, total[j]));
}

template <class Row, class Make>
void gemm(const GemmArgs& a, Make make) {
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

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

// Sum of n floats with four independent vector chains: a read-bandwidth probe.
float ReadSum(const float* p, size_t n) {
  const DF d;
  const size_t N = hn::Lanes(d);
  VF a0 = hn::Zero(d), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Add(a0, hn::LoadU(d, p + i));
    a1 = hn::Add(a1, hn::LoadU(d, p + i + N));
    a2 = hn::Add(a2, hn::LoadU(d, p + i + 2 * N));
    a3 = hn::Add(a3, hn::LoadU(d, p + i + 3 * N));
  }
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += p[i];
  return s;
}

void GemmRows(const GemmArgs& a) {
  const uint8_t* base = a.data;
  const size_t rb = a.row_bytes;
  switch (a.dtype) {
    case DType::F32:
      return gemm<RowF32>(a, [&](int64_t r) { return RowF32{reinterpret_cast<const float*>(base + size_t(r) * rb)}; });
    case DType::BF16:
      return gemm<RowBF16>(a, [&](int64_t r) { return RowBF16{reinterpret_cast<const uint16_t*>(base + size_t(r) * rb)}; });
    case DType::F16:
      return gemm<RowF16>(a, [&](int64_t r) { return RowF16{reinterpret_cast<const hwy::float16_t*>(base + size_t(r) * rb)}; });
    case DType::F8_E4M3:
      return gemm<RowFP8>(a, [&](int64_t r) { return RowFP8{base + size_t(r) * rb}; });
    case DType::F4_E2M1:
      return gemm<RowFP4>(a, [&](int64_t r) { return RowFP4{base + size_t(r) * rb}; });
    default: return;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(GemmRows);
HWY_EXPORT(TargetName);
HWY_EXPORT(ReadSum);

void gemm_rows_simd(const GemmArgs& args) { HWY_DYNAMIC_DISPATCH(GemmRows)(args); }
const char* simd_target_name() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }
float simd_read_sum(const float* p, size_t n) { return HWY_DYNAMIC_DISPATCH(ReadSum)(p, n); }

}  // namespace whale
#endif
