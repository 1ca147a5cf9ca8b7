// Sixteen rows of a matrix of 32-value blocks (Q8_0, Q4_0, Q5_0, MXFP4) turned into columns, for
// the kernels that compute a product with one vector lane (or tile column) per weight row: the
// VNNI kernel (quant_simd.cpp) and the AMX kernel (amx.cpp). Every type enters them as unsigned
// bytes u = level + offset (vpdpbusd and tdpbsud multiply unsigned weights by signed
// activations), so Σ level·x = Σ u·x − offset·Σx is an exact int32 per block, and both kernels
// compute every element the same way, block by block in order (quant.h's dot_q8_0, dot_q4_0,
// dot_q5_0 and dot_mxfp4 are the scalar statement):
//   acc = fma(float(Σ_k level[r][32b + k] · x.q[32b + k]), w.d[r][b] · x.d[b], acc)
// so their results are bitwise equal and the choice between them (by the number of tokens)
// never changes a number.
//
// x86-64 with AVX-512 only; callers check the CPU.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/quant.h"

#define WHALE_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

namespace whale::block_columns {

// GCC 12's AVX-512 intrinsics read an undefined vector they then warn about.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// The offset of each type's unsigned bytes: Q8_0's int8 values flipped by 128 (an xor of the top
// bit), Q4_0's and Q5_0's levels as stored (0-15 / 0-31), MXFP4's doubled e2m1 levels (−12..12)
// plus 12 through a byte table.
template <class Block> constexpr int kOffset = 0;
template <> inline constexpr int kOffset<BlockQ8_0> = 128;
template <> inline constexpr int kOffset<BlockQ4_0> = kLevelOffset<BlockQ4_0>;
template <> inline constexpr int kOffset<BlockQ5_0> = kLevelOffset<BlockQ5_0>;
template <> inline constexpr int kOffset<BlockMXFP4> = 12;

// Two rows' 16 bytes of nibbles (values 0-15 low, 16-31 high: quant.h) as the 64 values of rows
// a (lanes 0-7) and b (lanes 8-15): 128-bit chunks [a, a, b, b] shifted by 0, 4, 0, 4 bits.
WHALE_AVX512_TARGET inline __m512i nibble_rows(const uint8_t* a, const uint8_t* b) {
  const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a)), qb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
  const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(qa, qa)), _mm256_set_m128i(qb, qb), 1);
  return _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0x0f));
}

// Two rows' blocks (at a and b) as one vector of their unsigned values: row a's 32 (8 dwords)
// in lanes 0-7, row b's in lanes 8-15.
template <class Block>
WHALE_AVX512_TARGET inline __m512i row_pair(const uint8_t* a, const uint8_t* b);

template <>
WHALE_AVX512_TARGET inline __m512i row_pair<BlockQ8_0>(const uint8_t* a, const uint8_t* b) {
  constexpr size_t q = offsetof(BlockQ8_0, q);
  return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + q))),
                                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + q)), 1),
                          _mm512_set1_epi8(char(0x80)));
}
template <>
WHALE_AVX512_TARGET inline __m512i row_pair<BlockQ4_0>(const uint8_t* a, const uint8_t* b) {
  constexpr size_t qs = offsetof(BlockQ4_0, qs);
  return nibble_rows(a + qs, b + qs);
}
// Q5_0: bit 4 of value j is bit j of qh, so the two rows' qh words are the byte mask of the 16s.
template <>
WHALE_AVX512_TARGET inline __m512i row_pair<BlockQ5_0>(const uint8_t* a, const uint8_t* b) {
  constexpr size_t qs = offsetof(BlockQ5_0, qs), qh = offsetof(BlockQ5_0, qh);
  uint32_t ha, hb;
  std::memcpy(&ha, a + qh, 4);
  std::memcpy(&hb, b + qh, 4);
  const __m512i low4 = nibble_rows(a + qs, b + qs);
  return _mm512_mask_add_epi8(low4, __mmask64(ha | uint64_t(hb) << 32), low4, _mm512_set1_epi8(0x10));
}
template <>
WHALE_AVX512_TARGET inline __m512i row_pair<BlockMXFP4>(const uint8_t* a, const uint8_t* b) {
  constexpr size_t qs = offsetof(BlockMXFP4, qs);
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  return _mm512_shuffle_epi8(table, nibble_rows(a + qs, b + qs));
}

// A block of 16 rows as loaded: L[i] = row_pair of rows i and i + 8. `blk` is row 0's block;
// row n's starts off[n] bytes on.
template <class Block>
WHALE_AVX512_TARGET inline void load_rows(const uint8_t* blk, const int32_t* off, __m512i L[8]) {
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) L[i] = row_pair<Block>(blk + off[i], blk + off[i + 8]);
}

// The scales of the rows at offsets offv from `blk` (lane n: the row at offv[n]), as floats: a
// gather of the dwords starting the blocks, whose low halves are the f16 scales.
template <class Block>
WHALE_AVX512_TARGET inline __m512 scales(const uint8_t* blk, __m512i offv) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(offv, blk, 1)));
}
// MXFP4: 2^(e − 128) from the e8m0 byte as float bits, (e − 1) << 23, or 0x00200000 << e for the
// subnormal e < 2 (quant.h's mxfp4_scale).
template <>
WHALE_AVX512_TARGET inline __m512 scales<BlockMXFP4>(const uint8_t* blk, __m512i offv) {
  const __m512i e = _mm512_and_si512(_mm512_i32gather_epi32(offv, blk, 1), _mm512_set1_epi32(0xff));
  const __m512i normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
  const __m512i sub = _mm512_sllv_epi32(_mm512_set1_epi32(0x00200000), e);
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(e, _mm512_set1_epi32(2)), normal, sub));
}

// Rows as loaded turned into the weight operand of vpdpbusd / tdpbsud: col[q] lane n holds bytes
// 4q .. 4q + 3 of row n's 32 values (so 8 vectors are one AMX B tile: 8 rows of 64 bytes). Three
// rounds of 8 shuffles transpose the 16 × 8 dwords.
WHALE_AVX512_TARGET inline void columns(const __m512i L[8], __m512i col[8]) {
  // Within each 128-bit chunk (dwords 0-3 or 4-7 of a row): pairs of rows, then quads.
  __m512i lo[4], hi[4];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    lo[p] = _mm512_unpacklo_epi32(L[2 * p], L[2 * p + 1]);
    hi[p] = _mm512_unpackhi_epi32(L[2 * p], L[2 * p + 1]);
  }
  // s[e]: rows 0-3 (chunks 0, 1) and 8-11 (chunks 2, 3), element e of each chunk; t[e] the same
  // for rows 4-7 and 12-15.
  const __m512i s[4] = {_mm512_unpacklo_epi64(lo[0], lo[1]), _mm512_unpackhi_epi64(lo[0], lo[1]),
                        _mm512_unpacklo_epi64(hi[0], hi[1]), _mm512_unpackhi_epi64(hi[0], hi[1])};
  const __m512i t[4] = {_mm512_unpacklo_epi64(lo[2], lo[3]), _mm512_unpackhi_epi64(lo[2], lo[3]),
                        _mm512_unpacklo_epi64(hi[2], hi[3]), _mm512_unpackhi_epi64(hi[2], hi[3])};
  const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), second = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
  for (int e = 0; e < 4; ++e) {
    col[e] = _mm512_permutex2var_epi64(s[e], first, t[e]);
    col[e + 4] = _mm512_permutex2var_epi64(s[e], second, t[e]);
  }
}

// Block b of 16 rows as columns (above) and *wd the 16 rows' scales. Row n's blocks start at
// base + off[n] (rows past a matrix's last row repeat it; their lanes are never stored).
template <class Block>
WHALE_AVX512_TARGET inline void load(const uint8_t* base, const int32_t* off, __m512i offv, int64_t b, __m512i col[8], __m512* wd) {
  const uint8_t* blk = base + b * int64_t(sizeof(Block));
  __m512i L[8];
  load_rows<Block>(blk, off, L);
  columns(L, col);
  *wd = scales<Block>(blk, offv);
}
#pragma GCC diagnostic pop

// Q4_K: the 6-bit scales and mins of super-block `blk` (row 0's; row n's at offv[n] bytes on)
// for the 16 rows, one row per lane: three gathers of the packed bytes (quant.h's
// q4_k_scale_min: sub-blocks 0-3 keep theirs in the low 6 bits of bytes 0-3 / 4-7; sub-blocks
// 4-7 take 4 bits from bytes 8-11 and their top 2 bits from the top of bytes 0-3 / 4-7).
WHALE_AVX512_TARGET inline void q4_k_scales_mins_lanes(const uint8_t* blk, __m512i offv, __m512i sc[8], __m512i mn[8]) {
  constexpr int kScales = int(offsetof(BlockQ4_K, scales));
  const __m512i s0 = _mm512_i32gather_epi32(offv, blk + kScales, 1), s1 = _mm512_i32gather_epi32(offv, blk + kScales + 4, 1),
                s2 = _mm512_i32gather_epi32(offv, blk + kScales + 8, 1);
  const __m512i m63 = _mm512_set1_epi32(63), m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3);
  for (int j = 0; j < 4; ++j) {
    sc[j] = _mm512_and_si512(_mm512_srli_epi32(s0, 8 * j), m63);
    mn[j] = _mm512_and_si512(_mm512_srli_epi32(s1, 8 * j), m63);
    sc[j + 4] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(s2, 8 * j), m15), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(s0, 8 * j + 6), m3), 4));
    mn[j + 4] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(s2, 8 * j + 4), m15),
                                _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(s1, 8 * j + 6), m3), 4));
  }
}

// The offsets of 16 rows starting at `rows` (n of them present; the rest repeat the last).
struct Rows16 {
  alignas(64) int32_t off[16];
  Rows16(int64_t n, int64_t row_bytes) {
    for (int64_t i = 0; i < 16; ++i) off[i] = int32_t((i < n ? i : n - 1) * row_bytes);
  }
};

}  // namespace whale::block_columns
#endif
