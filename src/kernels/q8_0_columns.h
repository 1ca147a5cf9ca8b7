// Sixteen rows of a Q8_0 matrix turned into columns, for the kernels that compute a product of
// Q8_0 weights with one vector lane (or tile column) per weight row: the VNNI kernel
// (quant_simd.cpp) and the AMX kernel (amx.cpp). Both then compute every element the same way,
// block by block in order (dot_q8_0 in quant.h is the scalar statement):
//   acc = fma(float(Σ_k W[r][32b + k] · x.q[32b + k]), w.d[r][b] · x.d[b], acc)
// with the block's integer sum exact, so their results are bitwise equal and the choice between
// them (by the number of tokens) never changes a number.
//
// x86-64 with AVX-512 only; callers check the CPU.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#include "kernels/quant.h"

#define WHALE_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")))

namespace whale::q8_0_columns {

// GCC 12's AVX-512 intrinsics read an undefined vector they then warn about.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Block b of 16 rows as loaded: L[i] holds row i's 32 values (8 dwords) in lanes 0-7 and row
// i + 8's in lanes 8-15. `blk` is row 0's block b; row n's starts off[n] bytes on.
WHALE_AVX512_TARGET inline void load_rows(const uint8_t* blk, const int32_t* off, __m512i L[8]) {
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)
    L[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + off[i] + 2))),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + off[i + 8] + 2)), 1);
}

// The scales of the rows at offsets offv from `blk` (lane n: the row at offv[n]), as floats: a
// gather of the dwords starting the blocks, whose low halves are the f16 scales.
WHALE_AVX512_TARGET inline __m512 scales(const uint8_t* blk, __m512i offv) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(offv, blk, 1)));
}

// Block b of 16 rows as the weight operand of vpdpbusd / tdpbssd: col[q] lane n holds bytes
// 4q .. 4q + 3 of row n's 32 values (so 8 vectors are one AMX B tile: 8 rows of 64 bytes), and
// *wd the 16 rows' scales. Row n's blocks start at base + off[n] (rows past a matrix's last row
// repeat it; their lanes are never stored). Three rounds of 8 shuffles transpose the 16 × 8
// dwords.
WHALE_AVX512_TARGET inline void load(const uint8_t* base, const int32_t* off, __m512i offv, int64_t b, __m512i col[8], __m512* wd) {
  const uint8_t* blk = base + b * int64_t(sizeof(BlockQ8_0));
  __m512i L[8];
  load_rows(blk, off, L);
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
  *wd = scales(blk, offv);
}
#pragma GCC diagnostic pop

// The offsets of 16 rows starting at `rows` (n of them present; the rest repeat the last).
struct Rows16 {
  alignas(64) int32_t off[16];
  Rows16(int64_t n, int64_t row_bytes) {
    for (int64_t i = 0; i < 16; ++i) off[i] = int32_t((i < n ? i : n - 1) * row_bytes);
  }
};

}  // namespace whale::q8_0_columns
#endif
