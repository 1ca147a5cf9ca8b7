// SIMD products of block-quantized weights (Q8_0, Q4_0, Q5_0, MXFP4, Q4_K, Q6_K) with int8-
// quantized activations, one instruction set per Highway target, chosen at run time.
//
// Generic (every target): per block of 32 values the weights and the activations are widened to
// int16, multiplied by pairwise multiply-add into int32, then converted and scaled in float.
// AVX-512 targets have kernels of their own (x86 intrinsics on int8, below the generic ones):
// Highway 1.0 has no unsigned-by-signed byte product. They take 16 rows at a time and compute
// every element exactly as the scalar references (quant.h) and the AMX kernels (amx.h) do: the
// K types on every AVX-512 target, the 32-value types on those with VNNI (Highway's AVX3_DL
// target: Ice Lake, Zen 4 and later), with one vector lane per weight row (block_columns.h) and
// four byte products per instruction (vpdpbusd). The AVX2 target has kernels of its own too
// (quant_avx2-inl.h, the same numbers); the generic ones serve SSE4, other architectures and
// the 32-value types on AVX-512 without VNNI. Like the float kernels, every (row, token) pair
// accumulates in a fixed order per target, so batching never changes a token's result. The
// activation quantizer is here too (quantize_act_planar_simd).

// Highway 1.0 builds its AVX3_DL target (AVX-512 with VNNI: Ice Lake, Zen 4 and later) only
// on request; this file has kernels for it.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quant_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#if HWY_ARCH_X86
#include <immintrin.h>
#endif

#include "core/dtype.h"
#include "kernels/amx.h"
#include "kernels/block_columns.h"
#include "kernels/quant.h"
#include "kernels/quant_simd.h"

HWY_BEFORE_NAMESPACE();
// WHALE_VNNI: this target has AVX512_VNNI (vpdpbusd on 512-bit vectors). Highway 1.0.3 requires
// AVX512_VNNI at run time for AVX3_DL but compiles that target with "avxvnni" (the VEX form)
// instead, so GCC builds add the option here (popped again by HWY_AFTER_NAMESPACE). Only 512-bit
// VNNI intrinsics are used: they have no VEX encoding a CPU without AVX-VNNI would reject.
// Clang builds (fuzzing) keep the plain AVX-512 kernels on this target.
#undef WHALE_VNNI
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3_DL && !HWY_COMPILER_CLANG
#define WHALE_VNNI 1
#pragma GCC target("avx512vnni")
#else
#define WHALE_VNNI 0
#endif
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

// Weights stream from memory once per token; the hardware prefetcher alone left decode waiting
// on each new cache line (perf: most Q8_0 samples on the load of a block's scale). Prefetching
// 4 KiB ahead of the row being read gave about 25% more Q8_0 decode speed on a Zen 4 VM; on an
// Intel Xeon VM (BENCHMARKS.md, 2026-12-06) 3 KiB gave V2-Lite decode 10-12% more than 4 KiB
// (2 KiB as much there, but 10% less on a model held in its L3), none 20% less.
constexpr size_t kPrefetchAhead = 3072;

// Rows are taken in groups of 16, and within a group token tiles outer, rows inner: the group's
// weights stay in L1 while each tile's activations serve all of its rows. Rows outer re-read
// every token's activations from L2 for each row (a prompt's worth per row); tokens outer over a
// whole call (up to thousands of rows) would re-stream the weights for every tile instead.
constexpr int64_t kRowGroup = 16;

// Every cache line of the stored block kPrefetchAhead bytes past b.
template <class Block>
HWY_INLINE void prefetch_ahead(const Block* b) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(b) + kPrefetchAhead;
  for (size_t off = 0; off < sizeof(Block); off += 64) hwy::Prefetch(p + off);
}

// Vectors per block of 32 int16 values: every SIMD target has at least 8 lanes; the scalar
// fallback target has one.
constexpr size_t kMaxVecs = HWY_TARGET == HWY_SCALAR ? 32 : 32 / 8;

// Decodes block j (32 values) of a row into int16 vectors wq[0 .. 32/N16); `scaled` says the
// values already include their (integer) sub-block scales.
struct Decoded {
  V16 v[kMaxVecs];
  float min = 0.0f;  // Q4_K: dmin · m of the sub-block (its offset term is min · x.d · Σx.q)
};

// x86 targets from AVX2 on have F16C: one instruction instead of the portable bit conversion
// (a dozen, once per Q8_0 block).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
HWY_INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }
#else
HWY_INLINE float h2f(uint16_t h) { return f16_to_f32(h); }
#endif

// Σ_k w[k]·x[k] over 32 values as int32 lanes (lane order is fixed per target).
HWY_INLINE V32 dot32(const Decoded& w, const int8_t* x) {
  const D16 d16;
  const D32 d32;
  const DI8 d8;
  const size_t N = hn::Lanes(d16);
  V32 s0 = hn::Zero(d32), s1 = hn::Zero(d32);
  for (size_t k = 0; k < 32 / N; ++k)
    s0 = hn::ReorderWidenMulAccumulate(d32, w.v[k], hn::PromoteTo(d16, hn::LoadU(d8, x + k * N)), s0, s1);
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
  static constexpr int kPerBlock = 1;  // blocks of 32 per stored block
};

// ---- Q4_0 / Q5_0: 32 unsigned levels per block (values 0-15 in the low nibbles of qs, 16-31 in
// the high ones; Q5_0's fifth bits from qh), offset 8 / 16. The offset is the "min" term:
// d · offset · x.d · Σx.q.
template <class Block>
struct RowQx_0 {
  const Block* b;
  // Bits 4 of values 0-31 (Q5_0), 0 for Q4_0.
  static HWY_INLINE uint32_t fifth_bits(const BlockQ4_0&) { return 0; }
  static HWY_INLINE uint32_t fifth_bits(const BlockQ5_0& blk) {
    uint32_t qh;
    std::memcpy(&qh, blk.qh, 4);
    return qh;
  }
  HWY_INLINE float decode(int64_t j, Decoded& out) const {
    const D16 d16;
    const auto du16 = hn::RebindToUnsigned<D16>();
    const DU8 du8;
    const size_t N = hn::Lanes(d16);
    const Block& blk = b[j];
    const uint32_t qh = fifth_bits(blk);
    if (N <= 16) {  // each vector lies within the low-nibble or the high-nibble half
      for (size_t k = 0; k < 32 / N; ++k) {
        const size_t v0 = k * N;
        const auto bytes = hn::PromoteTo(du16, hn::LoadU(du8, blk.qs + v0 % 16));
        const auto low4 = v0 < 16 ? hn::And(bytes, hn::Set(du16, 0xf)) : hn::ShiftRight<4>(bytes);
        // Lane i takes bit v0 + i of qh as 16.
        static constexpr uint16_t kLaneBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
        const auto set = hn::TestBit(hn::Set(du16, uint16_t(qh >> v0)), hn::LoadU(du16, kLaneBit));
        out.v[k] = hn::BitCast(d16, hn::Or(low4, hn::IfThenElseZero(set, hn::Set(du16, 16))));
      }
    } else {  // 32-lane vectors (and the scalar target): through a byte array
      alignas(64) uint8_t levels[32];
      for (int v = 0; v < 32; ++v) levels[v] = uint8_t(level(blk, v));
      for (size_t k = 0; k < 32 / N; ++k) out.v[k] = hn::BitCast(d16, hn::PromoteTo(du16, hn::LoadU(du8, levels + k * N)));
    }
    const float d = h2f(blk.d);
    out.min = d * float(kLevelOffset<Block>);
    return d;
  }
  static constexpr bool kHasMin = true;
  static constexpr int kPerBlock = 1;
};

// ---- MXFP4: 32 signed levels per block (quant.h's kMxfp4Levels of the nibbles, placed as Q4_0's),
// the e8m0 scale as float. Looked up through a small array: the SIMD decode of the levels is a
// table lookup Highway 1.0 has no portable byte form of.
struct RowMXFP4 {
  const BlockMXFP4* b;
  HWY_INLINE float decode(int64_t j, Decoded& out) const {
    const D16 d16;
    const size_t N = hn::Lanes(d16);
    const BlockMXFP4& blk = b[j];
    alignas(64) int16_t v[32];
    for (int k = 0; k < 16; ++k) {
      v[k] = kMxfp4Levels[blk.qs[k] & 0xf];
      v[k + 16] = kMxfp4Levels[blk.qs[k] >> 4];
    }
    for (size_t k = 0; k < 32 / N; ++k) out.v[k] = hn::Load(d16, v + k * N);
    return mxfp4_scale(blk.e);
  }
  static constexpr bool kHasMin = false;
  static constexpr int kPerBlock = 1;
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
  static constexpr int kPerBlock = 8;
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
  static constexpr int kPerBlock = 8;
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
  // Each token's rows of activations, scales and sums, advanced block by block (computing
  // these addresses from `a` in the loop cost more instructions than the products).
  const int8_t* xq[T];
  const float* xd[T];
  const int32_t* xs[T];
  for (int j = 0; j < T; ++j) {
    xq[j] = a.x.q + (t + j) * a.x.ld_values;
    xd[j] = a.x.d + (t + j) * a.x.ld_blocks;
    xs[j] = a.x.sum + (t + j) * a.x.ld_blocks;
  }
  Decoded w;
  for (int64_t b = 0; b < blocks; ++b) {
    if (b % Row::kPerBlock == 0) prefetch_ahead(row.b + b / Row::kPerBlock);
    const float wd = row.decode(b, w);
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
      const V32 isum = dot32(w, xq[j] + b * 32);
      acc[j] = hn::MulAdd(hn::ConvertTo(df, isum), hn::Set(df, wd * xd[j][b]), acc[j]);
      if constexpr (Row::kHasMin) mins[j] += w.min * xd[j][b] * float(xs[j][b]);
    }
  }
  for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + i] = hn::GetLane(hn::SumOfLanes(df, acc[j])) - mins[j];
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3  // every AVX-512 target
// GCC 12 warns about the deliberately undefined lanes inside its own insert/permute intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// ---- Helpers of the AVX-512 kernels for the K types (k_gemm below).
//
// Q4_K: bytes 0-7: the 6-bit scales, 8-15: the mins of the super-block whose `scales` field starts at
// `packed` (see q4_k_scale_min: sub-blocks 0-3 keep theirs in the low 6 bits of bytes 0-3 /
// 4-7; sub-blocks 4-7 take 4 bits from bytes 8-11 and their top 2 bits from the top of bytes
// 0-3 / 4-7). Reads 16 bytes: the 12 of `scales` and 4 of the nibbles that follow it.
HWY_INLINE __m128i q4_k_scales_mins(const uint8_t* packed) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  // Low bits: scales 0-3 ← s[0..3] & 63, scales 4-7 ← s[8..11] & 15, mins 0-3 ← s[4..7] & 63,
  // mins 4-7 ← s[8..11] >> 4.
  const __m128i lo = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const __m128i lo_shifted = _mm_mask_blend_epi8(0xf000, lo, _mm_srli_epi16(lo, 4));
  const __m128i low = _mm_and_si128(lo_shifted, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
  // High bits of scales 4-7 ← top 2 bits of s[0..3], of mins 4-7 ← top 2 bits of s[4..7], moved
  // to bits 4-5 ((x >> 6) << 4 = (x >> 2) & 0x30; the 16-bit shift's spill from the next byte
  // lands in bits 6-7 and is masked off). Shuffle indices −1 give zero bytes.
  const __m128i hi = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
  return _mm_or_si128(low, _mm_and_si128(_mm_srli_epi16(hi, 2), _mm_set1_epi8(0x30)));
}

// acc + the sums of each pair of int16 products, as int32 lanes: one instruction with VNNI.
HWY_INLINE __m512i madd16_acc(__m512i acc, __m512i a, __m512i b) {
#if WHALE_VNNI
  return _mm512_dpwssd_epi32(acc, a, b);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

// The activations of a Q4_K product in the order the stored nibbles meet them. A 64-byte load
// of a super-block's q[64h ..] holds, in its low nibbles, sub-blocks 4h (bytes 0-31) and 4h + 2
// (bytes 32-63), in its high nibbles 4h + 1 and 4h + 3; so each super-block's activations are
// reordered by 32-value units as 0, 2, 1, 3, 4, 6, 5, 7 (two 128-bit shuffles per 128 values,
// once per call for all its rows). Loading the nibbles as two copies of 32 bytes each instead,
// in natural order, cost four shuffles per super-block and row.
HWY_INLINE void q4_k_order(const int8_t* x, int64_t n, int8_t* out) {
  for (int64_t i = 0; i < n; i += 128) {
    const __m512i a = _mm512_loadu_si512(x + i), b = _mm512_loadu_si512(x + i + 64);
    _mm512_storeu_si512(out + i, _mm512_shuffle_i64x2(a, b, 0x44));       // units 0, 2
    _mm512_storeu_si512(out + i + 64, _mm512_shuffle_i64x2(a, b, 0xee));  // units 1, 3
  }
}

// Eight vectors each holding two rows' eight int32 partial sums (P[k]: row k in lanes 0-7, row
// k + 8 in lanes 8-15) added up exactly per row: 14 shuffles and 7 additions. Lane n of the
// result is row n in the order rows_swap() (chunks 1 and 2 exchanged).
HWY_INLINE __m512i add_across8(const __m512i P[8]) {
  __m512i A[4];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) A[p] = _mm512_add_epi32(_mm512_unpacklo_epi32(P[2 * p], P[2 * p + 1]), _mm512_unpackhi_epi32(P[2 * p], P[2 * p + 1]));
  const __m512i B0 = _mm512_add_epi32(_mm512_unpacklo_epi64(A[0], A[1]), _mm512_unpackhi_epi64(A[0], A[1]));
  const __m512i B1 = _mm512_add_epi32(_mm512_unpacklo_epi64(A[2], A[3]), _mm512_unpackhi_epi64(A[2], A[3]));
  return _mm512_add_epi32(_mm512_shuffle_i32x4(B0, B1, 0x88), _mm512_shuffle_i32x4(B0, B1, 0xdd));
}
// The row of each lane of add_across8's result; permuting by it again restores the order.
HWY_INLINE __m512i rows_swap() { return _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15); }

// ---- The K types (Q4_K, Q6_K), 16 rows at a time, each element as dot_q4_k / dot_q6_k
// (quant.h) compute it, bit for bit: per super-block, row and token, the 16 int32 lanes of
// Σ scale · (levels · activations) (and Q4_K's 8 of min · Σx.q) are added up exactly across
// lanes for 16 rows at once (add_across8), then one fused multiply-add with d · x.d (and Q4_K's
// with −dmin · x.d). The int32 sums stay exact: |Σ| ≤ 256·63·15·127 (Q4_K), 256·32·128·127 (Q6_K).
//
// A row's super-block as the tile reads it: Row(blk, consts) decodes it, isum(x) is its 16
// lanes of sums with 256 activations. Q4_K's Σ_j min_j · Σx.q is computed for the 16 rows at
// once, one row per lane (vpdpwssd of the mins in pairs with the activation sums in pairs).
//
// Q4_K: vpmaddubsw multiplies the unsigned nibbles by the int8 activations and adds pairs into
// int16 (at most 2·15·127, no saturation); vpdpwssd (VNNI; vpmaddwd + vpaddd otherwise)
// multiplies those by the sub-blocks' 6-bit scales and adds pairs into int32. The eight scales
// and mins of a super-block are unpacked together with two byte shuffles. The activations are
// in q4_k_order.
// The four shuffle-index vectors of a Row type, loaded once per tile from its table (Row::kScaleIdx).
struct IndexVectors {
  __m512i v[4];
  template <class Table>
  HWY_INLINE explicit IndexVectors(const Table& t) {
    for (int k = 0; k < 4; ++k) v[k] = _mm512_load_si512(t.ix[k]);
  }
};

struct Q4KRow {
  static constexpr bool kMins = true;
  // vpshufb indices: the int16 lanes of the low half of a vector take scale byte lo
  // (zero-extended: index −1 gives a zero byte), those of the high half byte hi. Vector
  // v = 2h + (high nibbles): sub-blocks (4h, 4h + 2) and (4h + 1, 4h + 3). Tables built at
  // compile time: built per call (the kernel is called per band of a few groups of rows), they
  // cost decode several percent.
  struct Table {
    alignas(64) int8_t ix[4][64];
  };
  static constexpr Table kScaleIdx = [] {
    Table t{};
    const int lo[4] = {0, 1, 4, 5}, hi[4] = {2, 3, 6, 7};
    for (int v = 0; v < 4; ++v)
      for (int k = 0; k < 64; ++k) t.ix[v][k] = k % 2 ? int8_t(-1) : int8_t(k < 32 ? lo[v] : hi[v]);
    return t;
  }();
  __m512i w[4], sc[4];
  HWY_INLINE Q4KRow(const uint8_t* blk, const IndexVectors& c) {
    const BlockQ4_K& b = *reinterpret_cast<const BlockQ4_K*>(blk);
    const __m512i sm8 = _mm512_broadcast_i32x4(q4_k_scales_mins(b.scales));  // the 16 bytes in every 128-bit chunk
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    for (int h = 0; h < 2; ++h) {
      const __m512i q = _mm512_loadu_si512(b.q + 64 * h);
      w[2 * h] = _mm512_and_si512(q, low4);
      w[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
    }
    for (int v = 0; v < 4; ++v) sc[v] = _mm512_shuffle_epi8(sm8, c.v[v]);
  }
  HWY_INLINE __m512i isum(const int8_t* x) const {
    __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) s = madd16_acc(s, _mm512_maddubs_epi16(w[v], _mm512_loadu_si512(x + 64 * v)), sc[v]);
    return s;
  }
};

// Q6_K: per half super-block (128 values) the 64 bytes of ql give two vectors of 64 values (low
// nibbles: values 0-63, high nibbles: 64-127), each completed by its two bits from qh; the
// activations of each are 64 contiguous bytes. vpmaddubsw of the unsigned 6-bit values minus
// that of 32 (the offset) gives int16 pairs within ±(2·63 + 2·32)·127; the int8 scales (one per
// 16 values) multiply them in vpdpwssd into int32.
struct Q6KRow {
  static constexpr bool kMins = false;
  struct Table {
    alignas(64) int16_t ix[4][32];  // int16 lanes 8k..8k+7 of vector v take scale 4v + k
  };
  static constexpr Table kScaleIdx = [] {
    Table t{};
    for (int v = 0; v < 4; ++v)
      for (int l = 0; l < 32; ++l) t.ix[v][l] = int16_t(4 * v + l / 8);
    return t;
  }();
  __m512i w[4], sc[4];
  HWY_INLINE Q6KRow(const uint8_t* blk, const IndexVectors& c) {
    const BlockQ6_K& b = *reinterpret_cast<const BlockQ6_K*>(blk);
    const __m512i low4 = _mm512_set1_epi8(0x0f), low2 = _mm512_set1_epi8(0x03);
    const __m512i shift_lo = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0), shift_hi = _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4);
    const __m512i sc16 = _mm512_zextsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales))));
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(b.ql + 64 * h);
      const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h)));
      const __m512i hi_lo = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(qh, shift_lo), low2), 4);
      const __m512i hi_hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(qh, shift_hi), low2), 4);
      w[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, low4), hi_lo);
      w[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), hi_hi);
    }
    for (int v = 0; v < 4; ++v) sc[v] = _mm512_permutexvar_epi16(c.v[v], sc16);
  }
  HWY_INLINE __m512i isum(const int8_t* x) const {
    const __m512i c32 = _mm512_set1_epi8(32);
    __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const __m512i xv = _mm512_loadu_si512(x + 64 * v);
      s = madd16_acc(s, _mm512_sub_epi16(_mm512_maddubs_epi16(w[v], xv), _mm512_maddubs_epi16(c32, xv)), sc[v]);
    }
    return s;
  }
};

// `base` is row 0 of the group, its rows at off (offs: the same in add_across8's lane order);
// T ≤ 4 tokens from t. The rows are read one after the other, kWindow super-blocks at a time,
// as they lie in memory, and the exact sums wait in a buffer until the window's 16 rows are
// done: reading the 16 rows interleaved (super-block by super-block) left the hardware
// prefetcher behind and decode 10-25% slower whatever was prefetched by hand.
constexpr int64_t kWindow = 8;  // super-blocks: 2048 columns, one row of most matrices
template <int T, class Row, class Block>
HWY_INLINE void k_rows_tile(const QuantGemmArgs& a, const uint8_t* base, const int32_t* off, __m512i offs, __mmask16 present,
                            int64_t i, int64_t t) {
  const int64_t supers = a.cols / 256;
  const IndexVectors consts(Row::kScaleIdx);
  // Per super-block of the window and token, add_across8's input: vector k holds row k's eight
  // partial sums in lanes 0-7, row k + 8's in lanes 8-15.
  alignas(64) int32_t sums[kWindow][T][8][16];
  __m512 acc[T];
  for (int j = 0; j < T; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t w0 = 0; w0 < supers; w0 += kWindow) {
    const int64_t nw = std::min(kWindow, supers - w0);
    for (int r = 0; r < 16; ++r) {
      const int k = r % 8, lane = 8 * (r / 8);
      const uint8_t* row_base = base + off[r] + w0 * int64_t(sizeof(Block));
      for (int64_t s = 0; s < nw; ++s) {
        const uint8_t* blk = row_base + s * int64_t(sizeof(Block));
        prefetch_ahead(reinterpret_cast<const Block*>(blk));
        const Row row(blk, consts);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
          const int64_t tok = t + j;
          const __m512i isum = row.isum(a.x.q + tok * a.x.ld_values + (w0 + s) * 256);
          _mm256_store_si256(reinterpret_cast<__m256i*>(&sums[s][j][k][lane]),
                             _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1)));
        }
      }
    }
    for (int64_t s = 0; s < nw; ++s) {
      // Each row's d of super-block w0 + s, in the lanes' row order: Q4_K's first dword holds d
      // (low half) and dmin; Q6_K's d is its last two bytes, the high half of the dword ending
      // there (a dword starting at d would read past the matrix's last block).
      constexpr int64_t kDWord = Row::kMins ? 0 : int64_t(sizeof(Block)) - 4;
      const __m512i dd = _mm512_i32gather_epi32(offs, base + (w0 + s) * int64_t(sizeof(Block)) + kDWord, 1);
      const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(Row::kMins ? dd : _mm512_srli_epi32(dd, 16)));
      __m512i min_pairs[4];  // Q4_K: mins 2p (low int16) and 2p + 1 (high) of each row
      __m512 dmin;           // Q4_K: each row's dmin, the high half of the dword
      if constexpr (Row::kMins) {
        dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
        __m512i sc[8], mn[8];
        block_columns::q4_k_scales_mins_lanes(base + (w0 + s) * int64_t(sizeof(Block)), offs, sc, mn);
        for (int p = 0; p < 4; ++p) min_pairs[p] = _mm512_or_si512(mn[2 * p], _mm512_slli_epi32(mn[2 * p + 1], 16));
      }
      for (int j = 0; j < T; ++j) {
        const __m512 xd = _mm512_set1_ps(a.x.d[(t + j) * a.x.ld_blocks + (w0 + s) * 8]);  // the same for the super-block's eight blocks
        __m512i P[8];
        for (int k = 0; k < 8; ++k) P[k] = _mm512_load_si512(sums[s][j][k]);
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(add_across8(P)), _mm512_mul_ps(d, xd), acc[j]);
        if constexpr (Row::kMins) {
          // Σ_j min_j · Σx.q, exact: the activation sums (within ±32·127) fit int16.
          const int32_t* xs = a.x.sum + (t + j) * a.x.ld_blocks + (w0 + s) * 8;
          __m512i m = _mm512_setzero_si512();
          for (int p = 0; p < 4; ++p)
            m = madd16_acc(m, min_pairs[p], _mm512_set1_epi32(int32_t(uint32_t(xs[2 * p]) & 0xffff) | int32_t(uint32_t(xs[2 * p + 1]) << 16)));
          acc[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, xd), acc[j]);
        }
      }
    }
  }
  for (int j = 0; j < T; ++j) _mm512_mask_storeu_ps(a.y + (t + j) * a.ldy + i, present, _mm512_permutexvar_ps(rows_swap(), acc[j]));
}

template <class Row, class Block>
void k_gemm(const QuantGemmArgs& a) {
  for (int64_t g = 0; g < a.r1 - a.r0; g += 16) {
    const int64_t n = std::min<int64_t>(16, a.r1 - a.r0 - g);
    const block_columns::Rows16 rows(n, int64_t(a.row_bytes));
    const int32_t* off = rows.off;
    const __m512i offs = _mm512_permutexvar_epi32(rows_swap(), _mm512_load_si512(off));
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    const __mmask16 present = __mmask16((1u << n) - 1);
    for (int64_t t = 0; t < a.n_tok; t += 4) {
      switch (std::min<int64_t>(4, a.n_tok - t)) {
        case 1: k_rows_tile<1, Row, Block>(a, base, off, offs, present, g, t); break;
        case 2: k_rows_tile<2, Row, Block>(a, base, off, offs, present, g, t); break;
        case 3: k_rows_tile<3, Row, Block>(a, base, off, offs, present, g, t); break;
        default: k_rows_tile<4, Row, Block>(a, base, off, offs, present, g, t); break;
      }
    }
  }
}

#if WHALE_VNNI
// ---- 32-value blocks (Q8_0, Q4_0, Q5_0, MXFP4) with VNNI, one vector lane per weight row
// (block_columns.h): per block of 32 values and token, 8 vpdpbusd with the 16 rows' unsigned
// bytes (level + offset) and 4 activation bytes broadcast; offset · Σx.q comes off in int32, so
// the block's sum is exact and each element is what the scalar reference (dot_q8_0, ...) and
// the AMX kernel compute, bit for bit. One float multiply-add per block, row and token.

// The next group of rows (contiguous, 16 row lengths on) is fetched while this one is computed,
// evenly over its blocks (this is block b): the hardware prefetcher does not follow 16
// interleaved row streams (without this, decode read the lm_head at 60% of the row-by-row
// kernel's speed).
template <class Block>
HWY_INLINE void prefetch_next_group(const uint8_t* next, int64_t b) {
  constexpr int64_t kGroupBlock = 16 * int64_t(sizeof(Block));
  for (int64_t o = b * kGroupBlock; o < (b + 1) * kGroupBlock; o += 64) _mm_prefetch(reinterpret_cast<const char*>(next + o), _MM_HINT_T1);
}

template <int T, class Block>
HWY_INLINE void columns_tile(const QuantGemmArgs& a, const uint8_t* base, const block_columns::Rows16& rows, __m512i offv,
                             __mmask16 present, int64_t i, int64_t t) {
  const int64_t blocks = a.cols / 32;
  const uint8_t* next = base + 16 * a.row_bytes;
  __m512 acc[T];
  const int8_t* xq[T];
  const float* xd[T];
  const int32_t* xs[T];
  for (int j = 0; j < T; ++j) {
    acc[j] = _mm512_setzero_ps();
    xq[j] = a.x.q + (t + j) * a.x.ld_values;
    xd[j] = a.x.d + (t + j) * a.x.ld_blocks;
    xs[j] = a.x.sum + (t + j) * a.x.ld_blocks;
  }
  for (int64_t b = 0; b < blocks; ++b) {
    prefetch_next_group<Block>(next, b);
    __m512i col[8];
    __m512 wd;
    block_columns::load<Block>(base, rows.off, offv, b, col, &wd);
#pragma GCC unroll 8
    for (int j = 0; j < T; ++j) {
      const int8_t* x = xq[j] + 32 * b;
      auto bcast = [x](int q) {
        int32_t v;
        std::memcpy(&v, x + 4 * q, 4);
        return _mm512_set1_epi32(v);
      };
      __m512i s0 = _mm512_set1_epi32(-block_columns::kOffset<Block> * xs[j][b]), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        s0 = _mm512_dpbusd_epi32(s0, col[q], bcast(q));
        s1 = _mm512_dpbusd_epi32(s1, col[q + 4], bcast(q + 4));
      }
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(wd, _mm512_set1_ps(xd[j][b])), acc[j]);
    }
  }
  for (int j = 0; j < T; ++j) _mm512_mask_storeu_ps(a.y + (t + j) * a.ldy + i, present, acc[j]);
}

// One token: the rows' bytes as loaded (two rows per vector) and the block's 32 activations
// in both halves; each row's eight int32 partial sums are then added across lanes (add_across8:
// 14 shuffles where turning the weights into columns takes 24). The same exact block sums, so
// the same numbers as columns_tile. The sums come out with rows in the lane order rows_swap(),
// which the scales take too; one permute puts them back before the store. (Reading the rows
// two at a time through a buffer of sums instead, as k_rows_tile does, cost 25-35% here: a
// block of 32 values is too little work per stored vector.)
template <class Block>
HWY_INLINE void rows_tile1(const QuantGemmArgs& a, const uint8_t* base, const block_columns::Rows16& rows, __m512i offv,
                           __mmask16 present, int64_t i, int64_t t) {
  const int64_t blocks = a.cols / 32;
  const uint8_t* next = base + 16 * a.row_bytes;
  const __m512i swap = rows_swap();
  const __m512i offs = _mm512_permutexvar_epi32(swap, offv);
  const int8_t* xq = a.x.q + t * a.x.ld_values;
  const float* xd = a.x.d + t * a.x.ld_blocks;
  const int32_t* xs = a.x.sum + t * a.x.ld_blocks;
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    prefetch_next_group<Block>(next, b);
    const uint8_t* blk = base + b * int64_t(sizeof(Block));
    const __m512i xb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b)));
    __m512i P[8];
    block_columns::load_rows<Block>(blk, rows.off, P);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) P[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), P[k], xb);
    const __m512i isum = _mm512_sub_epi32(add_across8(P), _mm512_set1_epi32(block_columns::kOffset<Block> * xs[b]));
    const __m512 wd = block_columns::scales<Block>(blk, offs);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wd, _mm512_set1_ps(xd[b])), acc);
  }
  _mm512_mask_storeu_ps(a.y + t * a.ldy + i, present, _mm512_permutexvar_ps(swap, acc));
}

template <class Block>
void columns_gemm(const QuantGemmArgs& a) {
  for (int64_t g = 0; g < a.r1 - a.r0; g += 16) {
    const int64_t n = std::min<int64_t>(16, a.r1 - a.r0 - g);
    const block_columns::Rows16 rows(n, int64_t(a.row_bytes));
    const __m512i offv = _mm512_load_si512(rows.off);
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    const __mmask16 present = __mmask16((1u << n) - 1);
    for (int64_t t = 0; t < a.n_tok; t += 8) {
      switch (std::min<int64_t>(8, a.n_tok - t)) {
        case 1: rows_tile1<Block>(a, base, rows, offv, present, g, t); break;
        case 2: columns_tile<2, Block>(a, base, rows, offv, present, g, t); break;
        case 3: columns_tile<3, Block>(a, base, rows, offv, present, g, t); break;
        case 4: columns_tile<4, Block>(a, base, rows, offv, present, g, t); break;
        case 5: columns_tile<5, Block>(a, base, rows, offv, present, g, t); break;
        case 6: columns_tile<6, Block>(a, base, rows, offv, present, g, t); break;
        case 7: columns_tile<7, Block>(a, base, rows, offv, present, g, t); break;
        default: columns_tile<8, Block>(a, base, rows, offv, present, g, t); break;
      }
    }
  }
}
#endif  // VNNI
#pragma GCC diagnostic pop
#endif  // AVX-512

#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
#include "kernels/quant_avx2-inl.h"
#endif

// Groups of kRowGroup rows, and within a group token tiles outer, rows inner (see kRowGroup).
// tile(width, i, t) computes rows r0 + i for tokens t .. t + width, width a compile-time
// std::integral_constant of 1 to 4.
template <class Tile>
void gemm(const QuantGemmArgs& a, const Tile& tile) {
  const int64_t rows = a.r1 - a.r0;
  for (int64_t g = 0; g < rows; g += kRowGroup) {
    for (int64_t t = 0; t < a.n_tok; t += 4) {
      for (int64_t i = g; i < std::min(rows, g + kRowGroup); ++i) {
        switch (std::min<int64_t>(4, a.n_tok - t)) {
          case 1: tile(std::integral_constant<int, 1>(), i, t); break;
          case 2: tile(std::integral_constant<int, 2>(), i, t); break;
          case 3: tile(std::integral_constant<int, 3>(), i, t); break;
          default: tile(std::integral_constant<int, 4>(), i, t); break;
        }
      }
    }
  }
}

void QuantGemmRows(const QuantGemmArgs& a) {
#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
  if (avx2::gemm(a)) return;
#endif
  auto at = [&](int64_t i) { return a.data + size_t(a.r0 + i) * a.row_bytes; };
  // The generic tile over rows of Row (RowQ8_0, RowQx_0<...>, ...); unused on targets where
  // every type has a kernel of its own.
  [[maybe_unused]] auto generic = [&](auto row_type) {
    using Row = decltype(row_type);
    using Block = std::remove_const_t<std::remove_pointer_t<decltype(Row::b)>>;
    gemm(a, [&](auto T, int64_t i, int64_t t) { tile<decltype(T)::value>(Row{reinterpret_cast<const Block*>(at(i))}, a, i, t); });
  };
#if WHALE_VNNI
  // AMX from kAmxMinTokens on: the same numbers (block_columns.h, dot_q4_k, dot_q6_k), faster.
  const bool amx = a.amx && a.n_tok >= kAmxMinTokens && amx_int8_available();
  auto blocks32 = [&](auto block_type) {
    if (amx) return amx_gemm(a);
    return columns_gemm<decltype(block_type)>(a);
  };
#endif
  switch (a.dtype) {
#if WHALE_VNNI
    case DType::Q8_0: return blocks32(BlockQ8_0{});
    case DType::Q4_0: return blocks32(BlockQ4_0{});
    case DType::Q5_0: return blocks32(BlockQ5_0{});
    case DType::MXFP4: return blocks32(BlockMXFP4{});
#else
    case DType::Q8_0: return generic(RowQ8_0{});
    case DType::Q4_0: return generic(RowQx_0<BlockQ4_0>{});
    case DType::Q5_0: return generic(RowQx_0<BlockQ5_0>{});
    case DType::MXFP4: return generic(RowMXFP4{});
#endif
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
    case DType::Q4_K: {
#if WHALE_VNNI
      if (amx) return amx_gemm(a);
#endif
      // The activations reordered once per call (a band of rows), in a buffer kept per thread.
      thread_local std::vector<int8_t> ordered;
      ordered.resize(size_t(a.n_tok * a.cols) + 64);
      int8_t* xo = ordered.data() + (64 - reinterpret_cast<uintptr_t>(ordered.data()) % 64) % 64;
      for (int64_t t = 0; t < a.n_tok; ++t) q4_k_order(a.x.q + t * a.x.ld_values, a.cols, xo + t * a.cols);
      QuantGemmArgs b = a;
      b.x.q = xo;
      b.x.ld_values = a.cols;
      return k_gemm<Q4KRow, BlockQ4_K>(b);
    }
    case DType::Q6_K:
#if WHALE_VNNI
      if (amx) return amx_gemm(a);
#endif
      return k_gemm<Q6KRow, BlockQ6_K>(a);
#else
    case DType::Q4_K: return generic(RowQ4_K{});
    case DType::Q6_K: return generic(RowQ6_K{});
#endif
    default: return;
  }
}

bool HasVnni() { return WHALE_VNNI; }

// Whether every type's kernel on this target computes its scalar reference bit for bit.
bool IsExact() { return WHALE_VNNI || (HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2); }

// quant.h's quantize_act_planar, vectorized, with the same bits: the largest magnitude is exact
// in any order, the scale is computed as in the scalar version, the products are the same
// unfused multiplies, and NearestInt rounds half to even as the scalar version does.
void QuantizeActPlanar(const float* x, int64_t n, int64_t span, int8_t* q, float* d, int32_t* sum) {
  const DF df;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<int8_t, decltype(di)> d8;
  const int64_t L = int64_t(hn::Lanes(df));
  for (int64_t i0 = 0; i0 < n; i0 += span) {
    VF vmax = hn::Zero(df);
    for (int64_t k = 0; k < span; k += L) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, x + i0 + k)));
    const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    const float id = amax ? 127.0f / amax : 0.0f;
    const VF vid = hn::Set(df, id);
    for (int64_t b = i0; b < i0 + span; b += 32) {
      auto s = hn::Zero(di);
      for (int64_t k = 0; k < 32; k += L) {
        const auto v = hn::NearestInt(hn::Mul(hn::LoadU(df, x + b + k), vid));
        s = hn::Add(s, v);
        hn::StoreU(hn::DemoteTo(d8, v), d8, q + b + k);
      }
      d[b / 32] = amax / 127.0f;
      sum[b / 32] = hn::GetLane(hn::SumOfLanes(di, s));
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(QuantGemmRows);
HWY_EXPORT(QuantizeActPlanar);
HWY_EXPORT(HasVnni);
HWY_EXPORT(IsExact);
bool quant_simd_vnni() { return HWY_DYNAMIC_DISPATCH(HasVnni)(); }
bool quant_simd_exact() { return HWY_DYNAMIC_DISPATCH(IsExact)(); }
void quant_gemm_rows_simd(const QuantGemmArgs& args) { HWY_DYNAMIC_DISPATCH(QuantGemmRows)(args); }
void quantize_act_planar_simd(const float* x, int64_t n, int64_t span, int8_t* q, float* d, int32_t* sum) {
  HWY_DYNAMIC_DISPATCH(QuantizeActPlanar)(x, n, span, q, d, sum);
}
}  // namespace whale
#endif
