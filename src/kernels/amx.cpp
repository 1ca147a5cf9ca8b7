#include "kernels/amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/dtype.h"
#include "core/error.h"

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

AmxQ8Weights amx_repack_q8_0(const BlockQ8_0* w, int64_t rows, int64_t cols) {
  if (cols % 32 != 0) fail("amx_repack_q8_0: cols (", cols, ") must be a multiple of 32");
  AmxQ8Weights out;
  out.rows = rows;
  out.cols = cols;
  out.groups = (rows + 15) / 16;
  out.blocks = cols / 32;
  const size_t bytes = size_t(out.groups) * size_t(out.blocks) * AmxQ8Weights::kBlockBytes;
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) fail("amx_repack_q8_0: out of memory (", bytes, " bytes)");
  std::memset(p, 0, bytes);
  out.data = {static_cast<uint8_t*>(p), std::free};
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = r / 16, n = r % 16;
    for (int64_t b = 0; b < out.blocks; ++b) {
      const BlockQ8_0& blk = w[r * out.blocks + b];
      uint8_t* tile = out.data.get() + (size_t(g) * size_t(out.blocks) + size_t(b)) * AmxQ8Weights::kBlockBytes;
      for (int k = 0; k < 32; ++k) tile[(k / 4) * 64 + n * 4 + k % 4] = uint8_t(blk.q[k]);
      const float d = f16_to_f32(blk.d);
      std::memcpy(tile + 512 + n * sizeof(float), &d, sizeof d);
    }
  }
  return out;
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
// One C tile at a time (16 tokens × 16 rows): per block of 32 columns one `tdpbssd`, the int32
// tile stored and scaled into 16 float accumulators that stay in registers for the whole row.
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq"))) void amx_gemm_q8_0(
    const AmxQ8Weights& w, int64_t g0, int64_t g1, const int8_t* xq, const float* xd, int64_t ld_values, int64_t ld_blocks,
    int64_t n_tok, float* y, int64_t ldy) {
  static const TileConfig config = make_config();
  _tile_loadconfig(&config);
  const int64_t nb = w.blocks;
  alignas(64) int32_t c[16][16];
  alignas(64) float out[16][16];
  std::unique_ptr<int8_t[]> pad;  // the last token tile, zero-padded to 16 tokens
  std::unique_ptr<float[]> pad_d;
  for (int64_t t0 = 0; t0 < n_tok; t0 += 16) {
    const int64_t nt = std::min<int64_t>(16, n_tok - t0);
    const int8_t* a = xq + t0 * ld_values;
    const float* ad = xd + t0 * ld_blocks;
    int64_t lda = ld_values, ldd = ld_blocks;
    if (nt < 16) {  // tile loads read 16 rows: copy the tail into zeros
      pad.reset(new int8_t[size_t(16 * nb * 32)]());
      pad_d.reset(new float[size_t(16 * nb)]());
      for (int64_t t = 0; t < nt; ++t) {
        std::memcpy(pad.get() + t * nb * 32, a + t * ld_values, size_t(nb * 32));
        std::memcpy(pad_d.get() + t * nb, ad + t * ld_blocks, size_t(nb) * sizeof(float));
      }
      a = pad.get();
      ad = pad_d.get();
      lda = nb * 32;
      ldd = nb;
    }
    for (int64_t g = g0; g < g1; ++g) {
      __m512 acc[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = w.block(g, b);
        _tile_zero(0);
        _tile_loadd(4, a + b * 32, lda);
        _tile_loadd(6, blk, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_stored(0, c, 64);
        const __m512 wd = _mm512_load_ps(reinterpret_cast<const float*>(blk + 512));
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t)
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[t])), _mm512_mul_ps(wd, _mm512_set1_ps(ad[t * ldd + b])), acc[t]);
      }
      const int64_t r0 = g * 16, n = std::min<int64_t>(16, w.rows - r0);
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) _mm512_store_ps(out[t], acc[t]);
      for (int64_t t = 0; t < nt; ++t) std::memcpy(y + (t0 + t) * ldy + (r0 - g0 * 16), out[t], size_t(n) * sizeof(float));
    }
  }
  _tile_release();
}
#pragma GCC diagnostic pop

}  // namespace whale
