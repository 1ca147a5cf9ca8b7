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
  // The last token tile, zero-padded to 16 tokens (tile loads read 16 rows).
  const int64_t tail = a.n_tok % 16, full = a.n_tok - tail;
  thread_local std::vector<int8_t> pad;
  thread_local std::vector<float> pad_d;
  thread_local std::vector<int32_t> pad_s;
  if (tail) {
    pad.assign(size_t(16 * nb * 32), 0);
    pad_d.assign(size_t(16 * nb), 0.0f);
    pad_s.assign(size_t(16 * nb), 0);
    for (int64_t t = 0; t < tail; ++t) {
      std::memcpy(pad.data() + t * nb * 32, a.x.q + (full + t) * a.x.ld_values, size_t(nb * 32));
      std::memcpy(pad_d.data() + t * nb, a.x.d + (full + t) * a.x.ld_blocks, size_t(nb) * sizeof(float));
      std::memcpy(pad_s.data() + t * nb, a.x.sum + (full + t) * a.x.ld_blocks, size_t(nb) * sizeof(int32_t));
    }
  }
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
      const bool padded = t0 == full;
      const int8_t* xq = padded ? pad.data() : a.x.q + t0 * a.x.ld_values;
      const float* xd = padded ? pad_d.data() : a.x.d + t0 * a.x.ld_blocks;
      const int32_t* xs = padded ? pad_s.data() : a.x.sum + t0 * a.x.ld_blocks;
      const int64_t lda = padded ? nb * 32 : a.x.ld_values, ldd = padded ? nb : a.x.ld_blocks;
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

// Row r's 256 values of w' as hi / lo bytes (and Q4_K's mins per value), one super-block.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void split_row(const BlockQ4_K& b, uint8_t* hi, uint8_t* lo,
                                                                                      uint8_t* mins, float* d, float* dmin) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  for (int c = 0; c < 4; ++c) {  // bytes 32c .. 32c + 31: sub-blocks 2c (low nibbles), 2c + 1 (high)
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.q + 32 * c));
    const __m512i q16 = _mm512_cvtepu8_epi16(q);
    const __m512i nib[2] = {_mm512_and_si512(q16, low4), _mm512_srli_epi16(q16, 4)};
    for (int e = 0; e < 2; ++e) {
      uint8_t sc, m;
      q4_k_scale_min(b.scales, 2 * c + e, &sc, &m);
      const __m512i w = _mm512_mullo_epi16(nib[e], _mm512_set1_epi16(sc));
      const int o = 64 * c + 32 * e;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + o), _mm512_cvtepi16_epi8(_mm512_srli_epi16(w, 6)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + o), _mm512_cvtepi16_epi8(_mm512_and_si512(w, _mm512_set1_epi16(63))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mins + o), _mm256_set1_epi8(char(m)));
    }
  }
  *d = f16_to_f32(b.d);
  *dmin = f16_to_f32(b.dmin);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void split_row(const BlockQ6_K& b, uint8_t* hi, uint8_t* lo,
                                                                                      uint8_t*, float* d, float* dmin) {
  // Values 64v .. 64v + 63 (quant.h's layout): ql's low (v even) or high (v odd) nibbles of
  // bytes 64·(v / 2) .. + 63, with two bits of qh[32·(v / 2) + l % 32] from bit 2g, g the group
  // of 32 within the half.
  for (int v = 0; v < 4; ++v) {
    for (int e = 0; e < 2; ++e) {  // values 64v + 32e ..: sub-blocks 4v + 2e, 4v + 2e + 1
      const int h = v / 2, g = 2 * (v % 2) + e;  // group g of the half (q6_k_value's numbering)
      const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32 * (g & 1)));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
      const __m512i ql16 = _mm512_cvtepu8_epi16(ql), qh16 = _mm512_cvtepu8_epi16(qh);
      const __m512i low4 = g >= 2 ? _mm512_srli_epi16(ql16, 4) : _mm512_and_si512(ql16, _mm512_set1_epi16(0x0f));
      const __m512i high2 = _mm512_and_si512(_mm512_srli_epi16(qh16, 2 * g), _mm512_set1_epi16(3));
      const __m512i q = _mm512_sub_epi16(_mm512_or_si512(low4, _mm512_slli_epi16(high2, 4)), _mm512_set1_epi16(32));
      const int j = (64 * v + 32 * e) / 16;  // scale index of the first 16 values
      const __m512i sc = _mm512_mask_blend_epi16(0xffff0000u, _mm512_set1_epi16(b.scales[j]), _mm512_set1_epi16(b.scales[j + 1]));
      const __m512i w = _mm512_mullo_epi16(q, sc);
      const int o = 64 * v + 32 * e;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + o), _mm512_cvtepi16_epi8(_mm512_srai_epi16(w, 6)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + o), _mm512_cvtepi16_epi8(_mm512_and_si512(w, _mm512_set1_epi16(63))));
    }
  }
  *d = f16_to_f32(b.d);
  *dmin = 0.0f;
}

// Bytes [64c, 64c + 64) of 16 rows (row n at rows + 256·n) as a B tile: tile row p holds bytes
// 64c + 4p .. + 3 of each weight row, one per dword.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void to_tile(const uint8_t* rows, int c, uint8_t* tile) {
  for (int e = 0; e < 2; ++e) {
    __m512i L[8], col[8];
    for (int i = 0; i < 8; ++i)
      L[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + 256 * i + 64 * c + 32 * e))),
                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + 256 * (i + 8) + 64 * c + 32 * e)), 1);
    block_columns::columns(L, col);
    for (int q = 0; q < 8; ++q) _mm512_store_si512(tile + 64 * (8 * e + q), col[q]);
  }
}

template <class Block>
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void gemm_k(const QuantGemmArgs& a) {
  constexpr bool kMins = std::is_same_v<Block, BlockQ4_K>;
  static const TileConfig config = make_k_config();
  const int64_t supers = a.cols / 256, nb = a.cols / 32;
  thread_local std::vector<KPanel> panel;
  panel.resize(size_t(supers));
  // The last token tile, zero-padded to 16 tokens (tile loads read 16 rows).
  const int64_t tail = a.n_tok % 16, full = a.n_tok - tail;
  thread_local std::vector<int8_t> pad;
  thread_local std::vector<float> pad_d;
  if (tail) {
    pad.assign(size_t(16 * a.cols), 0);
    pad_d.assign(size_t(16 * nb), 0.0f);
    for (int64_t t = 0; t < tail; ++t) {
      std::memcpy(pad.data() + t * a.cols, a.x.q + (full + t) * a.x.ld_values, size_t(a.cols));
      std::memcpy(pad_d.data() + t * nb, a.x.d + (full + t) * a.x.ld_blocks, size_t(nb) * sizeof(float));
    }
  }
  _tile_loadconfig(&config);
  alignas(64) int32_t ch[16][16], cl[16][16], cm[16][16];
  alignas(64) uint8_t hi[16][256], lo[16][256], mins[16][256];
  for (int64_t g = 0; g < a.r1 - a.r0; g += 16) {
    const int64_t n = std::min<int64_t>(16, a.r1 - a.r0 - g);
    const block_columns::Rows16 rows(n, int64_t(a.row_bytes));
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    for (int64_t s = 0; s < supers; ++s) {
      KPanel& p = panel[size_t(s)];
      for (int r = 0; r < 16; ++r)
        split_row(*reinterpret_cast<const Block*>(base + rows.off[r] + s * int64_t(sizeof(Block))), hi[r], lo[r], mins[r], &p.d[r], &p.dmin[r]);
      for (int c = 0; c < 4; ++c) {
        to_tile(hi[0], c, p.hi[c]);
        to_tile(lo[0], c, p.lo[c]);
        if constexpr (kMins) to_tile(mins[0], c, p.mins[c]);
      }
    }
    const __mmask16 present = __mmask16((1u << n) - 1);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += 16) {
      const bool padded = t0 == full;
      const int8_t* xq = padded ? pad.data() : a.x.q + t0 * a.x.ld_values;
      const float* xd = padded ? pad_d.data() : a.x.d + t0 * a.x.ld_blocks;
      const int64_t lda = padded ? a.cols : a.x.ld_values, ldd = padded ? nb : a.x.ld_blocks;
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
