#include "kernels/amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/block_columns.h"

namespace whale {

namespace {
constexpr int kArchReqXcompPerm = 0x1023;  // arch_prctl: request permission for an XSAVE feature
constexpr int kXfeatureXtiledata = 18;     // the tile data registers

struct AmxStatus {
  bool ok = false;
  std::string why;
};

AmxStatus probe() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return {false, "CPUID leaf 7 is missing"};
  const bool tile = d & (1u << 24), int8 = d & (1u << 25), avx512 = (b & (1u << 16)) && (b & (1u << 30));
  if (!tile || !int8) return {false, "this CPU has no AMX-INT8 (Intel Sapphire Rapids or later has it)"};
  if (!avx512) return {false, "this CPU has AMX but not AVX-512 (F, BW)"};
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
    return {false, "the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM; Linux 5.16 or later)"};
  return {true, ""};
}
}  // namespace

bool amx_int8_available(std::string* why) {
  static const AmxStatus status = probe();
  if (why) *why = status.why;
  return status.ok;
}

namespace {
// The tile configuration (palette 1): tile 0 holds C (16 tokens × 16 rows of int32), 4 A
// (16 tokens × 32 int8), 6 B (8 rows of 64 bytes: 32 values of 16 weight rows).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig make_config() {
  TileConfig c;
  c.rows[0] = 16, c.colsb[0] = 64;
  c.rows[4] = 16, c.colsb[4] = 32;
  c.rows[6] = 8, c.colsb[6] = 64;
  return c;
}

// GCC 12's AVX-512 conversion intrinsics read an undefined vector it then warns about.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// The activations of tokens t0 .. t0 + 15 as tile loads read them (16 rows): in place, or for a
// last tile of fewer tokens from a copy zero-padded to 16, made once per call in per-thread
// buffers.
class TokenTiles {
 public:
  explicit TokenTiles(const QuantGemmArgs& a) : x_(a.x), full_(a.n_tok - a.n_tok % 16) {
    const int64_t tail = a.n_tok % 16, nb = a.cols / 32;
    if (!tail) return;
    q_.assign(size_t(16 * a.cols), 0);
    d_.assign(size_t(16 * nb), 0.0f);
    sum_.assign(size_t(16 * nb), 0);
    for (int64_t t = 0; t < tail; ++t) {
      std::memcpy(q_.data() + t * a.cols, a.x.q + (full_ + t) * a.x.ld_values, size_t(a.cols));
      std::memcpy(d_.data() + t * nb, a.x.d + (full_ + t) * a.x.ld_blocks, size_t(nb) * sizeof(float));
      std::memcpy(sum_.data() + t * nb, a.x.sum + (full_ + t) * a.x.ld_blocks, size_t(nb) * sizeof(int32_t));
    }
    padded_ = ActArgs{q_.data(), d_.data(), sum_.data(), a.cols, nb};
  }
  ActArgs at(int64_t t0) const {
    if (t0 == full_) return padded_;
    return ActArgs{x_.q + t0 * x_.ld_values, x_.d + t0 * x_.ld_blocks, x_.sum + t0 * x_.ld_blocks, x_.ld_values, x_.ld_blocks};
  }

 private:
  ActArgs x_, padded_{};
  int64_t full_;
  static thread_local std::vector<int8_t> q_;
  static thread_local std::vector<float> d_;
  static thread_local std::vector<int32_t> sum_;
};
thread_local std::vector<int8_t> TokenTiles::q_;
thread_local std::vector<float> TokenTiles::d_;
thread_local std::vector<int32_t> TokenTiles::sum_;

// Per group of 16 rows: its tile columns built once, then one C tile (16 tokens × 16 rows) at a
// time: per block of 32 columns one `tdpbsud` (signed activations by the unsigned weight bytes),
// the int32 tile stored, the offset term taken off, and scaled into 16 float accumulators that
// stay in registers for the whole row.
template <class Block>
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void gemm_blocks(const QuantGemmArgs& a) {
  static const TileConfig config = make_config();
  const int64_t nb = a.cols / 32;
  // Q8_0's bytes go back to their signed values (tdpbssd) and need no offset term: one integer
  // subtraction per block and token fewer (16% of the time at 512 tokens).
  constexpr bool kSigned = std::is_same_v<Block, BlockQ8_0>;
  constexpr int32_t offset = kSigned ? 0 : block_columns::kOffset<Block>;
  constexpr int64_t kPanelBlock = 512 + 16 * sizeof(float);  // B tile, then the 16 rows' scales
  thread_local std::vector<uint8_t> panel_storage;
  panel_storage.resize(size_t(nb * kPanelBlock) + 64);
  uint8_t* panel = panel_storage.data() + (64 - reinterpret_cast<uintptr_t>(panel_storage.data()) % 64) % 64;
  const TokenTiles tiles(a);
  _tile_loadconfig(&config);
  alignas(64) int32_t c[16][16];
  for (int64_t g = 0; g < a.r1 - a.r0; g += 16) {
    const int64_t n = std::min<int64_t>(16, a.r1 - a.r0 - g);
    const block_columns::Rows16 rows(n, int64_t(a.row_bytes));
    const __m512i offv = _mm512_load_si512(rows.off);
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      __m512i col[8];
      __m512 wd;
      block_columns::load<Block>(base, rows.off, offv, b, col, &wd);
      uint8_t* p = panel + b * kPanelBlock;
      for (int q = 0; q < 8; ++q) _mm512_store_si512(p + 64 * q, kSigned ? _mm512_xor_si512(col[q], _mm512_set1_epi8(char(0x80))) : col[q]);
      _mm512_store_ps(p + 512, wd);
    }
    const __mmask16 present = __mmask16((1u << n) - 1);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += 16) {
      const ActArgs x = tiles.at(t0);
      const int8_t* xq = x.q;
      const float* xd = x.d;
      const int32_t* xs = x.sum;
      const int64_t lda = x.ld_values, ldd = x.ld_blocks;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* p = panel + b * kPanelBlock;
        _tile_zero(0);
        _tile_loadd(4, xq + b * 32, lda);
        _tile_loadd(6, p, 64);
        if constexpr (kSigned) _tile_dpbssd(0, 4, 6);
        else _tile_dpbsud(0, 4, 6);
        _tile_stored(0, c, 64);
        const __m512 wd = _mm512_load_ps(reinterpret_cast<const float*>(p + 512));
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t) {
          __m512i isum = _mm512_load_si512(c[t]);
          if constexpr (!kSigned) isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(offset * xs[t * ldd + b]));
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wd, _mm512_set1_ps(xd[t * ldd + b])), acc[t]);
        }
      }
      const int64_t nt = std::min<int64_t>(16, a.n_tok - t0);
      for (int64_t t = 0; t < nt; ++t) _mm512_mask_storeu_ps(a.y + (t0 + t) * a.ldy + g, present, acc[t]);
    }
  }
  _tile_release();
}

// The K types (Q4_K, Q6_K) with the sub-block scales folded into the weights: w' = level ·
// scale (Q4_K: nibble · 6-bit scale, 0..945; Q6_K: (q − 32) · int8 scale, −4064..4096) is split
// as w' = 64·hi + lo with lo = w' & 63 (unsigned) and hi = w' >> 6 (Q4_K 0..14, Q6_K −64..64),
// both bytes, so a super-block's Σ w'·x = 64·Σ hi·x + Σ lo·x takes eight full-depth tile
// products (K = 64) with no per-sub-block work, exact in int32 (|Σ| ≤ 256·4096·127 < 2³¹).
// Q4_K's mins are one more product: Σ_j m_j·Σx.q = Σ_k m_j(k)·x_k, with m as the weight byte.
// Per super-block and token tile the two or three C tiles are stored and each token takes one
// fused multiply-add with d·x.d (and Q4_K one with −dmin·x.d): what dot_q4_k / dot_q6_k and the
// VNNI kernel compute, bit for bit.
struct alignas(64) KPanel {
  uint8_t hi[4][1024], lo[4][1024], mins[4][1024];  // B tiles (16 × 64 bytes) of the 4 chunks of 64 values
  float d[16], dmin[16];
};

TileConfig make_k_config() {
  TileConfig c;
  for (int t : {0, 1, 2}) c.rows[t] = 16, c.colsb[t] = 64;  // C: w'·x high part, low part, mins
  c.rows[4] = 16, c.colsb[4] = 64;                         // A: 16 tokens × 64 activations
  c.rows[6] = 16, c.colsb[6] = 64;                         // B: 64 values of 16 rows
  return c;
}

// Q4_K's panel of one super-block, built in the tile layout: the 16 rows' nibbles turned into
// columns (block_columns::columns), then each column vector's bytes times its row's scale as
// two int16 halves (even and odd bytes), split into hi and lo; the scales and mins of the 16
// rows come from block_columns::q4_k_scales_mins_lanes. Building it row by row and transposing the
// results took twice as long.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void build_q4_k(const uint8_t* blk, const int32_t* off,
                                                                                       __m512i offv, KPanel& p) {
  const __m512i dd = _mm512_i32gather_epi32(offv, blk, 1);
  _mm512_store_ps(p.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)));
  _mm512_store_ps(p.dmin, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
  __m512i sc[8], mn[8];  // per sub-block, one row per lane
  block_columns::q4_k_scales_mins_lanes(blk, offv, sc, mn);
  const __m512i low4 = _mm512_set1_epi8(0x0f), even = _mm512_set1_epi16(0x00ff), six = _mm512_set1_epi16(63);
  // vpshufb (within 128-bit lanes): byte 0 of each dword to all four of its bytes.
  const __m512i bcast = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
  for (int c = 0; c < 4; ++c) {  // bytes 32c .. 32c + 31: sub-blocks 2c (low nibbles), 2c + 1 (high)
    __m512i L[8], nib[2][8], col[8];
    for (int i = 0; i < 8; ++i) {
      L[i] = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + off[i] + offsetof(BlockQ4_K, q) + 32 * c))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + off[i + 8] + offsetof(BlockQ4_K, q) + 32 * c)), 1);
      nib[0][i] = _mm512_and_si512(L[i], low4);
      nib[1][i] = _mm512_and_si512(_mm512_srli_epi16(L[i], 4), low4);
    }
    for (int e = 0; e < 2; ++e) {
      const int j = 2 * c + e;
      const __m512i scale = _mm512_or_si512(sc[j], _mm512_slli_epi32(sc[j], 16));  // both int16 halves
      const __m512i min4 = _mm512_shuffle_epi8(mn[j], bcast);
      block_columns::columns(nib[e], col);
      for (int q = 0; q < 8; ++q) {
        const __m512i we = _mm512_mullo_epi16(_mm512_and_si512(col[q], even), scale);
        const __m512i wo = _mm512_mullo_epi16(_mm512_srli_epi16(col[q], 8), scale);
        _mm512_store_si512(p.hi[c] + 64 * (8 * e + q), _mm512_or_si512(_mm512_srli_epi16(we, 6), _mm512_slli_epi16(_mm512_srli_epi16(wo, 6), 8)));
        _mm512_store_si512(p.lo[c] + 64 * (8 * e + q), _mm512_or_si512(_mm512_and_si512(we, six), _mm512_slli_epi16(_mm512_and_si512(wo, six), 8)));
        _mm512_store_si512(p.mins[c] + 64 * (8 * e + q), min4);
      }
    }
  }
}

// The 256 unsigned 6-bit levels (q, value (q − 32)·scale·d) of a Q6_K super-block in order.
// Values 64v .. 64v + 63 (quant.h's layout): ql's low (v even) or high (v odd) nibbles of bytes
// 64·(v / 2) .. + 63, with two bits of qh[32·(v / 2) + l % 32] from bit 2g, g the group of 32
// within the half.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void q6_k_levels(const BlockQ6_K& b, uint8_t* out) {
  const __m256i low4 = _mm256_set1_epi8(0x0f), low2 = _mm256_set1_epi8(0x03);
  for (int v = 0; v < 4; ++v) {
    for (int e = 0; e < 2; ++e) {
      const int h = v / 2, g = 2 * (v % 2) + e;  // group g of the half (q6_k_value's numbering)
      const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32 * e));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
      const __m256i lo = _mm256_and_si256(g >= 2 ? _mm256_srli_epi16(ql, 4) : ql, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), low2);  // ≤ 3 per byte: the shift below stays in its byte
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 64 * v + 32 * e), _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)));
    }
  }
}

// Q6_K's panel of one super-block, built as Q4_K's (build_q4_k): the rows' levels in order, then
// per 32 values turned into columns and multiplied by the signed scales (one per 16 values, one
// row per lane from four gathers) as int16 halves, w' = (q − 32)·scale, split into hi and lo.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void build_q6_k(const uint8_t* blk, const int32_t* off,
                                                                                       __m512i offv, KPanel& p) {
  alignas(64) uint8_t q[16][256];
  for (int r = 0; r < 16; ++r) q6_k_levels(*reinterpret_cast<const BlockQ6_K*>(blk + off[r]), q[r]);
  // d: the last two bytes of each row's block, the high half of the dword ending there.
  const __m512i dd = _mm512_i32gather_epi32(offv, blk + sizeof(BlockQ6_K) - 4, 1);
  _mm512_store_ps(p.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
  __m512i sc4[4];  // scales 4k .. 4k + 3 of each row
  for (int k = 0; k < 4; ++k) sc4[k] = _mm512_i32gather_epi32(offv, blk + offsetof(BlockQ6_K, scales) + 4 * k, 1);
  const __m512i even = _mm512_set1_epi16(0x00ff), six = _mm512_set1_epi16(63), c32 = _mm512_set1_epi16(32);
  for (int v = 0; v < 4; ++v) {
    for (int e = 0; e < 2; ++e) {  // values 64v + 32e ..: sub-blocks 4v + 2e (col[0..3]) and 4v + 2e + 1 (col[4..7])
      __m512i L[8], col[8];
      for (int i = 0; i < 8; ++i)
        L[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256(reinterpret_cast<const __m256i*>(q[i] + 64 * v + 32 * e))),
                                  _mm256_load_si256(reinterpret_cast<const __m256i*>(q[i + 8] + 64 * v + 32 * e)), 1);
      block_columns::columns(L, col);
      for (int half = 0; half < 2; ++half) {
        const int j = 4 * v + 2 * e + half;
        // Scale j, sign-extended, in both int16 halves of each row's lane.
        const __m512i sj = _mm512_srai_epi32(_mm512_slli_epi32(sc4[j / 4], 24 - 8 * (j % 4)), 24);
        const __m512i scale = _mm512_or_si512(_mm512_and_si512(sj, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(sj, 16));
        for (int qq = 4 * half; qq < 4 * half + 4; ++qq) {
          const __m512i we = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_and_si512(col[qq], even), c32), scale);
          const __m512i wo = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_srli_epi16(col[qq], 8), c32), scale);
          const int row = 8 * e + qq;  // tile row within the chunk of 64 values
          _mm512_store_si512(p.hi[v] + 64 * row,
                             _mm512_or_si512(_mm512_and_si512(_mm512_srai_epi16(we, 6), even), _mm512_slli_epi16(_mm512_srai_epi16(wo, 6), 8)));
          _mm512_store_si512(p.lo[v] + 64 * row, _mm512_or_si512(_mm512_and_si512(we, six), _mm512_slli_epi16(_mm512_and_si512(wo, six), 8)));
        }
      }
    }
  }
}

template <class Block>
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void gemm_k(const QuantGemmArgs& a) {
  constexpr bool kMins = std::is_same_v<Block, BlockQ4_K>;
  static const TileConfig config = make_k_config();
  const int64_t supers = a.cols / 256;
  thread_local std::vector<KPanel> panel;
  panel.resize(size_t(supers));
  const TokenTiles tiles(a);
  _tile_loadconfig(&config);
  alignas(64) int32_t ch[16][16], cl[16][16], cm[16][16];
  for (int64_t g = 0; g < a.r1 - a.r0; g += 16) {
    const int64_t n = std::min<int64_t>(16, a.r1 - a.r0 - g);
    const block_columns::Rows16 rows(n, int64_t(a.row_bytes));
    const __m512i offv = _mm512_load_si512(rows.off);
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    for (int64_t s = 0; s < supers; ++s) {
      const uint8_t* blk = base + s * int64_t(sizeof(Block));
      if constexpr (kMins) build_q4_k(blk, rows.off, offv, panel[size_t(s)]);
      else build_q6_k(blk, rows.off, offv, panel[size_t(s)]);
    }
    const __mmask16 present = __mmask16((1u << n) - 1);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += 16) {
      const ActArgs x = tiles.at(t0);
      const int8_t* xq = x.q;
      const float* xd = x.d;
      const int64_t lda = x.ld_values, ldd = x.ld_blocks;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t s = 0; s < supers; ++s) {
        const KPanel& p = panel[size_t(s)];
        _tile_zero(0);
        _tile_zero(1);
        if constexpr (kMins) _tile_zero(2);
        for (int c = 0; c < 4; ++c) {
          _tile_loadd(4, xq + s * 256 + 64 * c, lda);
          _tile_loadd(6, p.hi[c], 64);
          if constexpr (kMins) _tile_dpbsud(0, 4, 6);  // Q4_K's hi is unsigned, Q6_K's signed
          else _tile_dpbssd(0, 4, 6);
          _tile_loadd(6, p.lo[c], 64);
          _tile_dpbsud(1, 4, 6);
          if constexpr (kMins) {
            _tile_loadd(6, p.mins[c], 64);
            _tile_dpbsud(2, 4, 6);
          }
        }
        _tile_stored(0, ch, 64);
        _tile_stored(1, cl, 64);
        if constexpr (kMins) _tile_stored(2, cm, 64);
        const __m512 d = _mm512_load_ps(p.d), dmin = _mm512_load_ps(p.dmin);
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t) {
          const __m512i sum = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(ch[t]), 6), _mm512_load_si512(cl[t]));
          const __m512 x = _mm512_set1_ps(xd[t * ldd + s * 8]);  // one activation scale per super-block
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d, x), acc[t]);
          if constexpr (kMins) acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cm[t])), _mm512_mul_ps(dmin, x), acc[t]);
        }
      }
      const int64_t nt = std::min<int64_t>(16, a.n_tok - t0);
      for (int64_t t = 0; t < nt; ++t) _mm512_mask_storeu_ps(a.y + (t0 + t) * a.ldy + g, present, acc[t]);
    }
  }
  _tile_release();
}

#pragma GCC diagnostic pop

}  // namespace

void amx_gemm(const QuantGemmArgs& a) {
  switch (a.dtype) {
    case DType::Q8_0: return gemm_blocks<BlockQ8_0>(a);
    case DType::Q4_0: return gemm_blocks<BlockQ4_0>(a);
    case DType::Q5_0: return gemm_blocks<BlockQ5_0>(a);
    case DType::MXFP4: return gemm_blocks<BlockMXFP4>(a);
    case DType::Q4_K: return gemm_k<BlockQ4_K>(a);
    case DType::Q6_K: return gemm_k<BlockQ6_K>(a);
    default: fail("amx_gemm: weights of type ", dtype_name(a.dtype), " have no AMX kernel");
  }
}

}  // namespace whale
