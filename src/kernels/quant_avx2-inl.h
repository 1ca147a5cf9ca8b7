// AVX2 kernels of quant_simd.cpp (Highway's AVX2 target: x86 CPUs without AVX-512, Haswell to
// Zen 3 and Intel's client cores), included by it once, inside its per-target namespace, on that
// target only. Like the AVX-512 kernels they compute every element exactly as the scalar
// references (quant.h) do, so all of whale's x86 kernels agree bit for bit:
//   32-value types: acc = fma(float(Σ_k level·x.q − offset·Σx.q), w.d · x.d, acc) per block;
//   Q4_K / Q6_K: one exact int32 per super-block (and Q4_K's mins), then one fma each.
// vpmaddubsw multiplies unsigned bytes by signed ones into int16 pairs, vpmaddwd widens: the
// levels enter as unsigned (level + offset, the offset taken off in int32) and no int16 ever
// saturates (bounds at each use). Q8_0's signed levels go in as |level| against the activations
// with the level's sign (vpsignb): |level| ≤ 128 and |x.q| ≤ 127 keep a pair within 2·128·127.
//
// 32-value types (Q8_0, Q4_0, Q5_0, MXFP4): eight rows at a time with one int32 lane per row
// (the weights turned into columns, as block_columns.h does for AVX-512 VNNI): per block and
// token, 8 vpmaddubsw of a column vector with 4 activation bytes broadcast, no horizontal sums.
// K types: row by row as the AVX-512 k_rows_tile, the exact per-row sums added across lanes for
// eight rows at once.
//
// No include guard: quant_simd.cpp includes it once per compilation of its AVX2 target.

namespace avx2 {

// ---- Eight rows of a matrix: their byte offsets from the first (rows past the last repeat it).
struct Rows8 {
  alignas(32) int32_t off[8];
  Rows8(int64_t n, int64_t row_bytes) {
    for (int64_t i = 0; i < 8; ++i) off[i] = int32_t((i < n ? i : n - 1) * row_bytes);
  }
};

// Stores lanes [0, n) of v at y (n ≤ 8).
HWY_INLINE void store_rows(float* y, __m256 v, int n) {
  if (n == 8) return _mm256_storeu_ps(y, v);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane), v);
}

// Eight rows' vectors of eight int32 lanes (P[n]: row n) added up per row: lane n = row n.
HWY_INLINE __m256i add_across8(const __m256i* P) {
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(P[0], P[1]), _mm256_hadd_epi32(P[2], P[3]));  // rows 0-3: lanes 0-3 | 4-7
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(P[4], P[5]), _mm256_hadd_epi32(P[6], P[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// Eight f16 values, one per row (at blk + off[n] + at), as floats.
HWY_INLINE __m256 f16_lanes(const uint8_t* blk, const int32_t* off, size_t at) {
  alignas(16) uint16_t h[8];
  for (int n = 0; n < 8; ++n) std::memcpy(&h[n], blk + off[n] + at, 2);
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}

// ---- 32-value blocks.
// The offset of each type's unsigned levels (Q8_0 enters signed: no offset).
template <class Block> constexpr int kOffset = 0;
template <> inline constexpr int kOffset<BlockQ4_0> = kLevelOffset<BlockQ4_0>;
template <> inline constexpr int kOffset<BlockQ5_0> = kLevelOffset<BlockQ5_0>;
template <> inline constexpr int kOffset<BlockMXFP4> = 12;

// A block's 16 bytes of nibbles as its 32 values in order (low nibbles 0-15, high 16-31).
HWY_INLINE __m256i nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// One row's block as 32 bytes in value order: Q8_0's signed levels, the others' unsigned ones.
template <class Block> HWY_INLINE __m256i levels(const uint8_t* blk);
template <> HWY_INLINE __m256i levels<BlockQ8_0>(const uint8_t* blk) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + offsetof(BlockQ8_0, q)));
}
template <> HWY_INLINE __m256i levels<BlockQ4_0>(const uint8_t* blk) { return nibbles(blk + offsetof(BlockQ4_0, qs)); }
// Q5_0: bit 4 of value j is bit j of qh: byte j of the 32 takes qh's byte j / 8 and tests bit j % 8.
template <> HWY_INLINE __m256i levels<BlockQ5_0>(const uint8_t* blk) {
  uint32_t qh;
  std::memcpy(&qh, blk + offsetof(BlockQ5_0, qh), 4);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(qh)),
                                             _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                                              3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(nibbles(blk + offsetof(BlockQ5_0, qs)), high);
}
// MXFP4: the doubled e2m1 levels (−12..12) plus 12 through a byte table.
template <> HWY_INLINE __m256i levels<BlockMXFP4>(const uint8_t* blk) {
  const __m256i table = _mm256_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0, 12, 13, 14, 15, 16, 18, 20, 24, 12,
                                         11, 10, 9, 8, 6, 4, 0);
  return _mm256_shuffle_epi8(table, nibbles(blk + offsetof(BlockMXFP4, qs)));
}

// The eight rows' block scales as floats (lane n: the row at off[n]).
template <class Block> HWY_INLINE __m256 scales(const uint8_t* blk, const int32_t* off) { return f16_lanes(blk, off, 0); }
// MXFP4: 2^(e − 128) as float bits, (e − 1) << 23, or 0x00200000 << e for the subnormal e < 2
// (quant.h's mxfp4_scale).
template <> HWY_INLINE __m256 scales<BlockMXFP4>(const uint8_t* blk, const int32_t* off) {
  alignas(32) int32_t e8[8];
  for (int n = 0; n < 8; ++n) e8[n] = blk[off[n] + offsetof(BlockMXFP4, e)];
  const __m256i e = _mm256_load_si256(reinterpret_cast<const __m256i*>(e8));
  const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
  const __m256i sub = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
  return _mm256_castsi256_ps(_mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e)));
}

// Eight rows R[n] of eight dwords as eight columns: col[q] lane n = dword q of row n.
HWY_INLINE void transpose8(const __m256i R[8], __m256i col[8]) {
  __m256i t[8], u[8];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    t[2 * p] = _mm256_unpacklo_epi32(R[2 * p], R[2 * p + 1]);      // dwords 0, 1 | 4, 5 of the pair
    t[2 * p + 1] = _mm256_unpackhi_epi32(R[2 * p], R[2 * p + 1]);  // dwords 2, 3 | 6, 7
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {  // rows 0-3, then 4-7: u[4h + e] holds dword e | e + 4 of the four
    u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
    u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
    u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
    u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
  }
#pragma GCC unroll 4
  for (int e = 0; e < 4; ++e) {
    col[e] = _mm256_permute2x128_si256(u[e], u[e + 4], 0x20);
    col[e + 4] = _mm256_permute2x128_si256(u[e], u[e + 4], 0x31);
  }
}

// The next group of eight rows (contiguous, 8 row lengths on) fetched while this one is
// computed, evenly over its blocks (this is block b): the hardware prefetcher does not follow
// eight interleaved row streams well.
template <class Block>
HWY_INLINE void prefetch_next_group(const uint8_t* next, int64_t b) {
  constexpr int64_t kGroupBlock = 8 * int64_t(sizeof(Block));
  for (int64_t o = b * kGroupBlock; o < (b + 1) * kGroupBlock; o += 64) _mm_prefetch(reinterpret_cast<const char*>(next + o), _MM_HINT_T0);
}

// Activation bytes 4q .. 4q + 3 in every dword.
HWY_INLINE __m256i bcast4(const int8_t* x, int q) {
  int32_t v;
  std::memcpy(&v, x + 4 * q, 4);
  return _mm256_set1_epi32(v);
}

// Rows [i, i + n) of the call (at base, offsets off), tokens [t, t + T).
template <int T, class Block>
HWY_INLINE void columns_tile(const QuantGemmArgs& a, const uint8_t* base, const int32_t* off, int n, int64_t i, int64_t t) {
  const int64_t blocks = a.cols / 32;
  const uint8_t* next = base + 8 * a.row_bytes;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  const int8_t* xq[T];
  const float* xd[T];
  const int32_t* xs[T];
  for (int j = 0; j < T; ++j) {
    acc[j] = _mm256_setzero_ps();
    xq[j] = a.x.q + (t + j) * a.x.ld_values;
    xd[j] = a.x.d + (t + j) * a.x.ld_blocks;
    xs[j] = a.x.sum + (t + j) * a.x.ld_blocks;
  }
  for (int64_t b = 0; b < blocks; ++b) {
    prefetch_next_group<Block>(next, b);
    const uint8_t* blk = base + b * int64_t(sizeof(Block));
    __m256i R[8], col[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) R[r] = levels<Block>(blk + off[r]);
    transpose8(R, col);
    const __m256 wd = scales<Block>(blk, off);
    for (int j = 0; j < T; ++j) {
      const int8_t* x = xq[j] + 32 * b;
      __m256i s;
      if constexpr (std::is_same_v<Block, BlockQ8_0>) {
        // |level| · (x with the level's sign): each int16 pair within 2·128·127.
        s = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q)
          s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(col[q]), _mm256_sign_epi8(bcast4(x, q), col[q])), ones));
      } else {
        // Unsigned levels ≤ 31: a pair within 2·31·127, four pairs' sums within int16.
        __m256i lo = _mm256_maddubs_epi16(col[0], bcast4(x, 0)), hi = _mm256_maddubs_epi16(col[4], bcast4(x, 4));
#pragma GCC unroll 3
        for (int q = 1; q < 4; ++q) {
          lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(col[q], bcast4(x, q)));
          hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(col[q + 4], bcast4(x, q + 4)));
        }
        s = _mm256_sub_epi32(_mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones)),
                             _mm256_set1_epi32(kOffset<Block> * xs[j][b]));
      }
      acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(wd, _mm256_set1_ps(xd[j][b])), acc[j]);
    }
  }
  for (int j = 0; j < T; ++j) store_rows(a.y + (t + j) * a.ldy + i, acc[j], n);
}

// One token (decode): each row's block against the token's 32 activations as loaded, the eight
// rows' int32 lanes then added across (add_across8): fewer instructions per block than turning
// the rows into columns for a single token, and the same exact block sums.
template <class Block>
HWY_INLINE void rows_tile1(const QuantGemmArgs& a, const uint8_t* base, const int32_t* off, int n, int64_t i, int64_t t) {
  const int64_t blocks = a.cols / 32;
  const uint8_t* next = base + 8 * a.row_bytes;
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* xq = a.x.q + t * a.x.ld_values;
  const float* xd = a.x.d + t * a.x.ld_blocks;
  const int32_t* xs = a.x.sum + t * a.x.ld_blocks;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    prefetch_next_group<Block>(next, b);
    const uint8_t* blk = base + b * int64_t(sizeof(Block));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
    __m256i P[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      const __m256i w = levels<Block>(blk + off[r]);
      if constexpr (std::is_same_v<Block, BlockQ8_0>) P[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), ones);
      else P[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
    }
    const __m256i isum = _mm256_sub_epi32(add_across8(P), _mm256_set1_epi32(kOffset<Block> * xs[b]));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(scales<Block>(blk, off), _mm256_set1_ps(xd[b])), acc);
  }
  store_rows(a.y + t * a.ldy + i, acc, n);
}

template <class Block>
void columns_gemm(const QuantGemmArgs& a) {
  for (int64_t g = 0; g < a.r1 - a.r0; g += 8) {
    const int n = int(std::min<int64_t>(8, a.r1 - a.r0 - g));
    const Rows8 rows(n, int64_t(a.row_bytes));
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    for (int64_t t = 0; t < a.n_tok; t += 8) {
      switch (std::min<int64_t>(8, a.n_tok - t)) {
        case 1: rows_tile1<Block>(a, base, rows.off, n, g, t); break;
        case 2: columns_tile<2, Block>(a, base, rows.off, n, g, t); break;
        case 3: columns_tile<3, Block>(a, base, rows.off, n, g, t); break;
        case 4: columns_tile<4, Block>(a, base, rows.off, n, g, t); break;
        case 5: columns_tile<5, Block>(a, base, rows.off, n, g, t); break;
        case 6: columns_tile<6, Block>(a, base, rows.off, n, g, t); break;
        case 7: columns_tile<7, Block>(a, base, rows.off, n, g, t); break;
        default: columns_tile<8, Block>(a, base, rows.off, n, g, t); break;
      }
    }
  }
}

// ---- K types (Q4_K, Q6_K), each row's super-block as eight int32 lanes whose sum is exact.

// The same for eight rows' vectors of four lanes (M[n]: row n).
HWY_INLINE __m256i add_across8x4(const __m128i* M) {
  __m256i A[4];
  for (int k = 0; k < 4; ++k) A[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(M[k]), M[k + 4], 1);  // row k | row k + 4
  return _mm256_hadd_epi32(_mm256_hadd_epi32(A[0], A[1]), _mm256_hadd_epi32(A[2], A[3]));
}

// Q4_K's scales (bytes 0-7) and mins (8-15) of the super-block whose `scales` field is at
// `packed` (quant.h's q4_k_scale_min; reads 16 bytes: the 12 and 4 of the nibbles after them).
HWY_INLINE __m128i q4_k_scales_mins(const uint8_t* packed) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
  const __m128i lo = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const __m128i lo_shifted = _mm_blend_epi32(lo, _mm_srli_epi16(lo, 4), 0x8);  // dword 3: mins 4-7 from the high nibbles
  const __m128i low = _mm_and_si128(lo_shifted, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
  const __m128i hi = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
  return _mm_or_si128(low, _mm_and_si128(_mm_srli_epi16(hi, 2), _mm_set1_epi8(0x30)));
}

// A row's super-block for T tokens: sums[j] (eight int32 lanes) += its products with token j's
// 256 activations at x[j]; Q4_K also leaves its eight mins as int16 in *mins.
template <int T>
HWY_INLINE void q4_k_isum(const BlockQ4_K& blk, const int8_t* const* x, __m256i* sums, __m128i* mins) {
  const __m128i sm = q4_k_scales_mins(blk.scales);
  const __m256i sm2 = _mm256_broadcastsi128_si256(sm);
  *mins = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int h = 0; h < 4; ++h) {  // 32 bytes of nibbles: sub-blocks 2h (low) and 2h + 1 (high)
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.q + 32 * h));
    const __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
    // The sub-blocks' 6-bit scales in every int16 lane (byte k, then a zero byte).
    const __m256i sc_lo = _mm256_shuffle_epi8(sm2, _mm256_set1_epi16(int16_t(0xff00 | (2 * h))));
    const __m256i sc_hi = _mm256_shuffle_epi8(sm2, _mm256_set1_epi16(int16_t(0xff00 | (2 * h + 1))));
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
      // Nibbles · x: pairs within 2·15·127; times a scale ≤ 63 in int32.
      const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j] + 64 * h))), sc_lo);
      const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j] + 64 * h + 32))), sc_hi);
      sums[j] = _mm256_add_epi32(sums[j], _mm256_add_epi32(p0, p1));
    }
  }
}

// Q6_K: per half (128 values) ql's 64 bytes and qh's 32 give four vectors of 32 six-bit values
// (unsigned, offset 32); each 16 values share an int8 scale. The offset's term,
// 32 · Σ_g scale_g · Σx over group g, comes from the activations' group sums (g16, below).
template <int T>
HWY_INLINE void q6_k_isum(const BlockQ6_K& blk, const int8_t* const* x, const __m256i* g16, __m256i* sums) {
  const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
  const __m256i sc2 = _mm256_broadcastsi128_si256(sc8);
  const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h));
    // Values 128h + 32k .. + 31 (ggml's layout: ql low nibbles, then high; qh's bit pairs 0-3).
    const __m256i v[4] = {
        _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
        _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45))};
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      // Scales 2m (int16 lanes 0-7) and 2m + 1 (8-15) of vector m = 4h + k, sign-extended: the
      // byte into the high half of each lane, then an arithmetic shift.
      const int m = 4 * h + k;
      const __m256i idx = _mm256_setr_epi8(-1, 2 * m, -1, 2 * m, -1, 2 * m, -1, 2 * m, -1, 2 * m, -1, 2 * m, -1, 2 * m, -1, 2 * m, -1,
                                           2 * m + 1, -1, 2 * m + 1, -1, 2 * m + 1, -1, 2 * m + 1, -1, 2 * m + 1, -1, 2 * m + 1, -1,
                                           2 * m + 1, -1, 2 * m + 1);
      const __m256i sc = _mm256_srai_epi16(_mm256_shuffle_epi8(sc2, idx), 8);
#pragma GCC unroll 4
      for (int j = 0; j < T; ++j)  // six-bit values · x: pairs within 2·63·127; times |scale| ≤ 128 in int32
        sums[j] = _mm256_add_epi32(sums[j], _mm256_madd_epi16(_mm256_maddubs_epi16(v[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j] + 32 * m))), sc));
    }
  }
  // The scales in g16's group order (lanes 0-7: groups 0, 2, .., 14; 8-15: groups 1, 3, .., 15).
  const __m256i sc_groups = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
  for (int j = 0; j < T; ++j) sums[j] = _mm256_sub_epi32(sums[j], _mm256_slli_epi32(_mm256_madd_epi16(sc_groups, g16[j]), 5));
}

// The sums of each 16 activations of a super-block (256 values at x) as int16 (each within
// 16·127), lanes 0-7 groups 0, 2, .., 14 and lanes 8-15 groups 1, 3, .., 15.
struct alignas(32) GroupSums {
  int16_t v[16];
};
HWY_INLINE void group_sums16(const int8_t* x, GroupSums* out) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256i q[8];  // q[k] lane l: the sum of values 32k + 4l .. + 3
  for (int k = 0; k < 8; ++k)
    q[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * k))), ones16);
  // Two rounds of pairwise sums: lanes 0-3 of a = groups 2k (k = 0..3) | lanes 4-7 groups 2k + 1.
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(q[0], q[1]), _mm256_hadd_epi32(q[2], q[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(q[4], q[5]), _mm256_hadd_epi32(q[6], q[7]));
  _mm256_store_si256(reinterpret_cast<__m256i*>(out->v), _mm256_packs_epi32(a, b));  // per 128-bit half: a's four, then b's four
}

constexpr int64_t kWindow = 8;  // super-blocks per row read in one go (2048 columns)

// Rows [i, i + n) of the call (at base, offsets off), tokens [t, t + T); g16 (Q6_K): each
// token's group sums, one vector per super-block. The rows are read one after the other,
// kWindow super-blocks at a time, as they lie in memory; the exact sums wait in a buffer until
// the window's eight rows are done, then are added across lanes for the eight at once.
template <int T, class Block>
HWY_INLINE void k_rows_tile(const QuantGemmArgs& a, const uint8_t* base, const int32_t* off, int n, const GroupSums* g16, int64_t i,
                            int64_t t) {
  constexpr bool kMins = std::is_same_v<Block, BlockQ4_K>;
  const int64_t supers = a.cols / 256;
  alignas(32) int32_t sums[kWindow][T][8][8];
  alignas(16) int16_t mins[kWindow][8][8];  // Q4_K: each row's eight mins
  __m256 acc[T];
  for (int j = 0; j < T; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t w0 = 0; w0 < supers; w0 += kWindow) {
    const int64_t nw = std::min(kWindow, supers - w0);
    for (int r = 0; r < 8; ++r) {
      const uint8_t* row = base + off[r] + w0 * int64_t(sizeof(Block));
      for (int64_t s = 0; s < nw; ++s) {
        const Block& blk = *reinterpret_cast<const Block*>(row + s * int64_t(sizeof(Block)));
        prefetch_ahead(&blk);
        const int8_t* x[T];
        __m256i acc_i[T];
        for (int j = 0; j < T; ++j) {
          x[j] = a.x.q + (t + j) * a.x.ld_values + (w0 + s) * 256;
          acc_i[j] = _mm256_setzero_si256();
        }
        if constexpr (kMins) {
          __m128i m;
          q4_k_isum<T>(blk, x, acc_i, &m);
          _mm_store_si128(reinterpret_cast<__m128i*>(mins[s][r]), m);
        } else {
          __m256i g[T];
          for (int j = 0; j < T; ++j) g[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(g16[(t + j) * supers + w0 + s].v));
          q6_k_isum<T>(blk, x, g, acc_i);
        }
        for (int j = 0; j < T; ++j) _mm256_store_si256(reinterpret_cast<__m256i*>(sums[s][j][r]), acc_i[j]);
      }
    }
    for (int64_t s = 0; s < nw; ++s) {
      const uint8_t* blk = base + (w0 + s) * int64_t(sizeof(Block));
      const __m256 d = f16_lanes(blk, off, kMins ? offsetof(BlockQ4_K, d) : offsetof(BlockQ6_K, d));
      __m256 dmin = _mm256_setzero_ps();
      __m128i mn[8];
      if constexpr (kMins) {
        dmin = f16_lanes(blk, off, offsetof(BlockQ4_K, dmin));
        for (int r = 0; r < 8; ++r) mn[r] = _mm_load_si128(reinterpret_cast<const __m128i*>(mins[s][r]));
      }
      for (int j = 0; j < T; ++j) {
        const __m256 xd = _mm256_set1_ps(a.x.d[(t + j) * a.x.ld_blocks + (w0 + s) * 8]);  // one scale per super-block
        acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(add_across8(reinterpret_cast<const __m256i*>(sums[s][j]))), _mm256_mul_ps(d, xd), acc[j]);
        if constexpr (kMins) {
          // Σ_k min_k · Σx.q over the eight sub-blocks, exact: the sums (within ±32·127) fit int16.
          const int32_t* xs = a.x.sum + (t + j) * a.x.ld_blocks + (w0 + s) * 8;
          const __m128i xs16 = _mm_packs_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xs)),
                                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(xs + 4)));
          __m128i M[8];
          for (int r = 0; r < 8; ++r) M[r] = _mm_madd_epi16(mn[r], xs16);
          acc[j] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(add_across8x4(M)), _mm256_mul_ps(dmin, xd), acc[j]);
        }
      }
    }
  }
  for (int j = 0; j < T; ++j) store_rows(a.y + (t + j) * a.ldy + i, acc[j], n);
}

template <class Block>
void k_gemm(const QuantGemmArgs& a) {
  const int64_t supers = a.cols / 256;
  // Q6_K: every token's group sums, once per call (a band of rows), in a buffer kept per thread.
  thread_local std::vector<GroupSums> groups;
  if constexpr (std::is_same_v<Block, BlockQ6_K>) {
    groups.resize(size_t(a.n_tok * supers));
    for (int64_t t = 0; t < a.n_tok; ++t)
      for (int64_t s = 0; s < supers; ++s) group_sums16(a.x.q + t * a.x.ld_values + s * 256, &groups[size_t(t * supers + s)]);
  }
  for (int64_t g = 0; g < a.r1 - a.r0; g += 8) {
    const int n = int(std::min<int64_t>(8, a.r1 - a.r0 - g));
    const Rows8 rows(n, int64_t(a.row_bytes));
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    for (int64_t t = 0; t < a.n_tok; t += 4) {
      switch (std::min<int64_t>(4, a.n_tok - t)) {
        case 1: k_rows_tile<1, Block>(a, base, rows.off, n, groups.data(), g, t); break;
        case 2: k_rows_tile<2, Block>(a, base, rows.off, n, groups.data(), g, t); break;
        case 3: k_rows_tile<3, Block>(a, base, rows.off, n, groups.data(), g, t); break;
        default: k_rows_tile<4, Block>(a, base, rows.off, n, groups.data(), g, t); break;
      }
    }
  }
}

// Every type this file has a kernel for; false leaves the call to the generic kernel.
inline bool gemm(const QuantGemmArgs& a) {
  switch (a.dtype) {
    case DType::Q8_0: columns_gemm<BlockQ8_0>(a); return true;
    case DType::Q4_0: columns_gemm<BlockQ4_0>(a); return true;
    case DType::Q5_0: columns_gemm<BlockQ5_0>(a); return true;
    case DType::MXFP4: columns_gemm<BlockMXFP4>(a); return true;
    case DType::Q4_K: k_gemm<BlockQ4_K>(a); return true;
    case DType::Q6_K: k_gemm<BlockQ6_K>(a); return true;
    default: return false;
  }
}

}  // namespace avx2
