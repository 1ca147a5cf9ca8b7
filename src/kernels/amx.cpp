#include "kernels/amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/q8_0_columns.h"

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
}  // namespace

// GCC 12's AVX-512 conversion intrinsics read an undefined vector it then warns about.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Per group of 16 rows: its tile columns built once, then one C tile (16 tokens × 16 rows) at a
// time: per block of 32 columns one `tdpbssd`, the int32 tile stored and scaled into 16 float
// accumulators that stay in registers for the whole row.
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"))) void amx_gemm_q8_0(
    const QuantGemmArgs& a) {
  if (a.dtype != DType::Q8_0) fail("amx_gemm_q8_0: weights of type ", dtype_name(a.dtype));
  static const TileConfig config = make_config();
  const int64_t nb = a.cols / 32;
  constexpr int64_t kPanelBlock = 512 + 16 * sizeof(float);  // B tile, then the 16 rows' scales
  thread_local std::vector<uint8_t> panel_storage;
  panel_storage.resize(size_t(nb * kPanelBlock) + 64);
  uint8_t* panel = panel_storage.data() + (64 - reinterpret_cast<uintptr_t>(panel_storage.data()) % 64) % 64;
  // The last token tile, zero-padded to 16 tokens (tile loads read 16 rows).
  const int64_t tail = a.n_tok % 16, full = a.n_tok - tail;
  thread_local std::vector<int8_t> pad;
  thread_local std::vector<float> pad_d;
  if (tail) {
    pad.assign(size_t(16 * nb * 32), 0);
    pad_d.assign(size_t(16 * nb), 0.0f);
    for (int64_t t = 0; t < tail; ++t) {
      std::memcpy(pad.data() + t * nb * 32, a.x.q + (full + t) * a.x.ld_values, size_t(nb * 32));
      std::memcpy(pad_d.data() + t * nb, a.x.d + (full + t) * a.x.ld_blocks, size_t(nb) * sizeof(float));
    }
  }
  _tile_loadconfig(&config);
  alignas(64) int32_t c[16][16];
  for (int64_t g = 0; g < a.r1 - a.r0; g += 16) {
    const int64_t n = std::min<int64_t>(16, a.r1 - a.r0 - g);
    const q8_0_columns::Rows16 rows(n, int64_t(a.row_bytes));
    const __m512i offv = _mm512_load_si512(rows.off);
    const uint8_t* base = a.data + size_t(a.r0 + g) * a.row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      __m512i col[8];
      __m512 wd;
      q8_0_columns::load(base, rows.off, offv, b, col, &wd);
      uint8_t* p = panel + b * kPanelBlock;
      for (int q = 0; q < 8; ++q) _mm512_store_si512(p + 64 * q, col[q]);
      _mm512_store_ps(p + 512, wd);
    }
    const __mmask16 present = __mmask16((1u << n) - 1);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += 16) {
      const bool padded = t0 == full;
      const int8_t* xq = padded ? pad.data() : a.x.q + t0 * a.x.ld_values;
      const float* xd = padded ? pad_d.data() : a.x.d + t0 * a.x.ld_blocks;
      const int64_t lda = padded ? nb * 32 : a.x.ld_values, ldd = padded ? nb : a.x.ld_blocks;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* p = panel + b * kPanelBlock;
        _tile_zero(0);
        _tile_loadd(4, xq + b * 32, lda);
        _tile_loadd(6, p, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_stored(0, c, 64);
        const __m512 wd = _mm512_load_ps(reinterpret_cast<const float*>(p + 512));
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t)
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[t])), _mm512_mul_ps(wd, _mm512_set1_ps(xd[t * ldd + b])), acc[t]);
      }
      const int64_t nt = std::min<int64_t>(16, a.n_tok - t0);
      for (int64_t t = 0; t < nt; ++t) _mm512_mask_storeu_ps(a.y + (t0 + t) * a.ldy + g, present, acc[t]);
    }
  }
  _tile_release();
}
#pragma GCC diagnostic pop

}  // namespace whale
