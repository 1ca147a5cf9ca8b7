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

// Q4_K: per group of 16 rows and super-block, the 8 sub-blocks' nibbles as B tiles (low nibbles
// of 32 bytes are one sub-block, the high ones the next) and the rows' scales, mins, d and dmin
// as floats. Per token tile and super-block, one `tdpbsud` per sub-block into its own stored C;
// then per token the scales are applied in float, exactly: |C · scale| ≤ 32·15·127·63 < 2²², so
// four of them add up in float without rounding, and the two halves' sum is the int32 sum
// rounded once, as dot_q4_k converts it. Σ min · Σx.q is exact in float too (< 2²¹).
struct alignas(64) Q4KPanel {
  uint8_t b[8][512];   // B tiles of the 8 sub-blocks
  float sc[8][16];     // scale of sub-block j for each row
  float m[8][16];      // min of sub-block j for each row
  float d[16], dmin[16];
};

__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void gemm_q4_k(const QuantGemmArgs& a) {
  static const TileConfig config = make_config();
  const int64_t supers = a.cols / 256, nb = a.cols / 32;
  thread_local std::vector<Q4KPanel> panel;
  panel.resize(size_t(supers));
  // Σx.q per block as floats, for every token (a padded tile's tokens zero).
  const int64_t tail = a.n_tok % 16, full = a.n_tok - tail, n_pad = full + (tail ? 16 : 0);
  thread_local std::vector<float> xsum;
  xsum.assign(size_t(n_pad * nb), 0.0f);
  for (int64_t t = 0; t < a.n_tok; ++t)
    for (int64_t b = 0; b < nb; ++b) xsum[size_t(t * nb + b)] = float(a.x.sum[t * a.x.ld_blocks + b]);
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
  alignas(64) int32_t c[8][16][16];
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  for (int64_t g = 0; g < a.r1 - a.r0; g += 16) {
    const int64_t n = std::min<int64_t>(16, a.r1 - a.r0 - g);
    const block_columns::Rows16 rows(n, int64_t(a.row_bytes));
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    for (int64_t s = 0; s < supers; ++s) {
      Q4KPanel& p = panel[size_t(s)];
      const uint8_t* blk = base + s * int64_t(sizeof(BlockQ4_K));
      for (int h = 0; h < 4; ++h) {  // bytes 32h .. 32h + 31: sub-blocks 2h (low nibbles), 2h + 1
        __m512i L[8], lo[8], hi[8], col[8];
        for (int i = 0; i < 8; ++i) {
          L[i] = _mm512_inserti64x4(
              _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + rows.off[i] + offsetof(BlockQ4_K, q) + 32 * h))),
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + rows.off[i + 8] + offsetof(BlockQ4_K, q) + 32 * h)), 1);
          lo[i] = _mm512_and_si512(L[i], low4);
          hi[i] = _mm512_and_si512(_mm512_srli_epi16(L[i], 4), low4);
        }
        block_columns::columns(lo, col);
        for (int q = 0; q < 8; ++q) _mm512_store_si512(p.b[2 * h] + 64 * q, col[q]);
        block_columns::columns(hi, col);
        for (int q = 0; q < 8; ++q) _mm512_store_si512(p.b[2 * h + 1] + 64 * q, col[q]);
      }
      for (int r = 0; r < 16; ++r) {
        const BlockQ4_K& b = *reinterpret_cast<const BlockQ4_K*>(blk + rows.off[r]);
        for (int j = 0; j < 8; ++j) {
          uint8_t sc, m;
          q4_k_scale_min(b.scales, j, &sc, &m);
          p.sc[j][r] = float(sc);
          p.m[j][r] = float(m);
        }
        p.d[r] = f16_to_f32(b.d);
        p.dmin[r] = f16_to_f32(b.dmin);
      }
    }
    const __mmask16 present = __mmask16((1u << n) - 1);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += 16) {
      const bool padded = t0 == full;
      const int8_t* xq = padded ? pad.data() : a.x.q + t0 * a.x.ld_values;
      const float* xd = padded ? pad_d.data() : a.x.d + t0 * a.x.ld_blocks;
      const int64_t lda = padded ? a.cols : a.x.ld_values, ldd = padded ? nb : a.x.ld_blocks;
      const float* xs = xsum.data() + t0 * nb;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t s = 0; s < supers; ++s) {
        const Q4KPanel& p = panel[size_t(s)];
        for (int j = 0; j < 8; ++j) {
          _tile_zero(0);
          _tile_loadd(4, xq + s * 256 + 32 * j, lda);
          _tile_loadd(6, p.b[j], 64);
          _tile_dpbsud(0, 4, 6);
          _tile_stored(0, c[j], 64);
        }
        __m512 sc[8], m[8];
        for (int j = 0; j < 8; ++j) {
          sc[j] = _mm512_load_ps(p.sc[j]);
          m[j] = _mm512_load_ps(p.m[j]);
        }
        const __m512 d = _mm512_load_ps(p.d), dmin = _mm512_load_ps(p.dmin);
        for (int t = 0; t < 16; ++t) {
          __m512 lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[0][t])), sc[0]);
          __m512 hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[4][t])), sc[4]);
          for (int j = 1; j < 4; ++j) {
            lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[j][t])), sc[j], lo);
            hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[j + 4][t])), sc[j + 4], hi);
          }
          const float* xst = xs + t * nb + s * 8;
          __m512 mins = _mm512_mul_ps(m[0], _mm512_set1_ps(xst[0]));
          for (int j = 1; j < 8; ++j) mins = _mm512_fmadd_ps(m[j], _mm512_set1_ps(xst[j]), mins);
          const __m512 x = _mm512_set1_ps(xd[t * ldd + s * 8]);
          acc[t] = _mm512_fmadd_ps(_mm512_add_ps(lo, hi), _mm512_mul_ps(d, x), acc[t]);
          acc[t] = _mm512_fnmadd_ps(mins, _mm512_mul_ps(dmin, x), acc[t]);
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

void amx_gemm_blocks(const QuantGemmArgs& a) {
  switch (a.dtype) {
    case DType::Q8_0: return gemm_blocks<BlockQ8_0>(a);
    case DType::Q4_0: return gemm_blocks<BlockQ4_0>(a);
    case DType::Q5_0: return gemm_blocks<BlockQ5_0>(a);
    case DType::MXFP4: return gemm_blocks<BlockMXFP4>(a);
    default: fail("amx_gemm_blocks: weights of type ", dtype_name(a.dtype), " have no AMX kernel");
  }
}

void amx_gemm_q4_k(const QuantGemmArgs& a) {
  if (a.dtype != DType::Q4_K) fail("amx_gemm_q4_k: weights of type ", dtype_name(a.dtype));
  gemm_q4_k(a);
}

}  // namespace whale
