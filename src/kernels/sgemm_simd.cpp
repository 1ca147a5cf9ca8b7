// The float32 GEMM tile kernel, compiled per instruction set by Highway (see sgemm.h).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/sgemm_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>

#include <algorithm>
#include <vector>

#include "kernels/sgemm.h"

HWY_BEFORE_NAMESPACE();
namespace whale {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Vectors per row of the widest tile: 6 × 4 accumulators where there are 32 vector registers
// (AVX-512, Arm), 6 × 2 on x86 targets with 16 (AVX2, SSE4), where 6 × 4 spilled the
// accumulators to the stack on every k. The tile never changes a number (sgemm.h).
constexpr int kNV = HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3 ? 2 : 4;

// C[m0..m0+MR, n0..n0+NV·lanes) with MR ≤ 6 rows; full vectors only.
// A(m, k): a row-major element, or one of a transposed A (six consecutive values per k).
template <bool TA>
HWY_INLINE float a_at(const SgemmArgs& a, const float* const* arow, int r, int64_t k) {
  return TA ? a.A[k * a.lda + (arow[r] - a.A)] : arow[r][k];
}

template <int MR, int NV, bool TA>
HWY_INLINE void tile(const SgemmArgs& a, int64_t m0, int64_t n0) {
  const DF d;
  const size_t L = hn::Lanes(d);
  VF c[MR][NV];
  for (int r = 0; r < MR; ++r) {
    const float* cr = a.C + (m0 + r) * a.ldc + n0;
    for (int v = 0; v < NV; ++v) c[r][v] = a.resume ? hn::LoadU(d, cr + v * L) : hn::Zero(d);
  }
  const float* arow[MR];  // TA: arow[r] - A is the row index m0 + r
  for (int r = 0; r < MR; ++r) arow[r] = TA ? a.A + (m0 + r) : a.A + (m0 + r) * a.lda;
  const float* b = a.B + n0;
  for (int64_t k = 0; k < a.K; ++k, b += a.ldb) {
    VF bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = hn::LoadU(d, b + v * L);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const VF av = hn::Set(d, a_at<TA>(a, arow, r, k));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = hn::MulAdd(av, bv[v], c[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* cr = a.C + (m0 + r) * a.ldc + n0;
    for (int v = 0; v < NV; ++v) {
      if (a.accumulate) c[r][v] = hn::Add(c[r][v], hn::LoadU(d, cr + v * L));
      hn::StoreU(c[r][v], d, cr + v * L);
    }
  }
}

// One vector wide (possibly partial: `cols` ≤ lanes; a partial row of B goes through a
// zero-padded buffer so nothing past the matrix is read or written).
template <int MR, bool TA>
HWY_INLINE void tile1(const SgemmArgs& a, int64_t m0, int64_t n0, size_t cols) {
  const DF d;
  const size_t L = hn::Lanes(d);
  HWY_ALIGN float buf[HWY_MAX_BYTES / sizeof(float)] = {};
  VF c0[MR];
  for (int r = 0; r < MR; ++r) {
    if (a.resume) {
      const float* c = a.C + (m0 + r) * a.ldc + n0;
      for (size_t i = 0; i < cols; ++i) buf[i] = c[i];
      c0[r] = hn::Load(d, buf);
    } else {
      c0[r] = hn::Zero(d);
    }
  }
  const float* arow[MR];  // TA: arow[r] - A is the row index m0 + r
  for (int r = 0; r < MR; ++r) arow[r] = TA ? a.A + (m0 + r) : a.A + (m0 + r) * a.lda;
  const float* b = a.B + n0;
  for (int64_t k = 0; k < a.K; ++k, b += a.ldb) {
    VF b0;
    if (cols == L) {
      b0 = hn::LoadU(d, b);
    } else {
      for (size_t i = 0; i < cols; ++i) buf[i] = b[i];
      b0 = hn::Load(d, buf);
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) c0[r] = hn::MulAdd(hn::Set(d, a_at<TA>(a, arow, r, k)), b0, c0[r]);
  }
  for (int r = 0; r < MR; ++r) {
    float* c = a.C + (m0 + r) * a.ldc + n0;
    hn::Store(c0[r], d, buf);
    for (size_t i = 0; i < cols; ++i) c[i] = a.accumulate ? c[i] + buf[i] : buf[i];
  }
}

// Columns [n0, n1) of rows m0..m0+MR: kNV-vector tiles, then 2-vector and 1-vector edges.
template <int MR>
HWY_INLINE void row_block(const SgemmArgs& a, int64_t m0, int64_t n0, int64_t n1) {
  const DF d;
  const int64_t L = int64_t(hn::Lanes(d));
  int64_t n = n0;
  if (a.trans_a) {
    for (; n + kNV * L <= n1; n += kNV * L) tile<MR, kNV, true>(a, m0, n);
    for (; n + 2 * L <= n1; n += 2 * L) tile<MR, 2, true>(a, m0, n);
    for (; n < n1; n += L) tile1<MR, true>(a, m0, n, size_t(std::min(L, n1 - n)));
  } else {
    for (; n + kNV * L <= n1; n += kNV * L) tile<MR, kNV, false>(a, m0, n);
    for (; n + 2 * L <= n1; n += 2 * L) tile<MR, 2, false>(a, m0, n);
    for (; n < n1; n += L) tile1<MR, false>(a, m0, n, size_t(std::min(L, n1 - n)));
  }
}

// Rows [m0, m1) × columns [n0, n1) over the whole (already blocked) K of `a`.
void Rows(const SgemmArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  int64_t m = m0;
  for (; m + 6 <= m1; m += 6) row_block<6>(a, m, n0, n1);
  switch (m1 - m) {
    case 5: row_block<5>(a, m, n0, n1); break;
    case 4: row_block<4>(a, m, n0, n1); break;
    case 3: row_block<3>(a, m, n0, n1); break;
    case 2: row_block<2>(a, m, n0, n1); break;
    case 1: row_block<1>(a, m, n0, n1); break;
    default: break;
  }
}

// Rows [m0, m1), in K blocks and column panels of kPanel with the loop over row blocks
// innermost: with many rows, one panel of B (128 × kPanel floats, 32 KiB with AVX-512) is copied to a
// contiguous buffer and stays in L1 for all of them (read in place, B's rows 2 or 4 KiB apart
// would all fall in the same few L1 sets, and it would be streamed from L2 for every row
// block). With few rows (weight gradients, a quarter of a small M per call) copying costs more
// than it saves; the panel is read in place in K blocks of 256.
// With `accumulate` the product goes through a scratch [m1-m0, N] first (C += the whole sum,
// as the reference adds it).
void SgemmRows(const SgemmArgs& a, int64_t m0, int64_t m1) {
  const int64_t kPanel = kNV * int64_t(hn::Lanes(DF()));
  const bool pack = m1 - m0 >= 48;
  const int64_t kKBlock = pack ? 128 : 256;
  SgemmArgs b = a;
  thread_local std::vector<float> scratch;  // kept: a fresh allocation per call costs page faults
  thread_local hwy::AlignedFreeUniquePtr<float[]> packed;  // [kKBlock][kPanel]: the panel in use
  thread_local size_t packed_size = 0;
  const bool via_scratch = a.accumulate && a.K > kKBlock;
  if (via_scratch) {
    scratch.resize(std::max(scratch.size(), size_t((m1 - m0) * a.N)));
    b.A = a.trans_a ? a.A + m0 : a.A + m0 * a.lda;  // rows from m0
    b.C = scratch.data();
    b.ldc = a.N;
    b.M = m1 - m0;
    b.accumulate = false;
  }
  const int64_t r0 = via_scratch ? 0 : m0, r1 = via_scratch ? m1 - m0 : m1;
  const int64_t panels = (a.N + kPanel - 1) / kPanel;
  if (pack && packed_size < size_t(kKBlock * kPanel)) {
    packed_size = size_t(kKBlock * kPanel);
    packed = hwy::AllocateAligned<float>(packed_size);
    HWY_ASSERT(packed);
  }
  for (int64_t k0 = 0; k0 < a.K; k0 += kKBlock) {
    const int64_t kc = std::min(kKBlock, a.K - k0);
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * kPanel, w = std::min(kPanel, a.N - n0);
      SgemmArgs part = b;  // columns [n0, n0 + w) of k block [k0, k0 + kc)
      part.K = kc;
      part.N = w;
      part.A = a.trans_a ? b.A + k0 * a.lda : b.A + k0;
      part.B = a.B + k0 * a.ldb + n0;
      part.C = b.C + n0;
      part.accumulate = b.accumulate;  // only when K is one block
      part.resume = k0 > 0;
      if (pack) {
        float* dst = packed.get();  // copied just before its rows use it
        if (w == kPanel) {  // whole vectors (a call of memmove per 256 bytes cost more than the copy)
          const DF d;
          const int64_t L = int64_t(hn::Lanes(d));
          for (int64_t k = 0; k < kc; ++k)
            for (int64_t v = 0; v < kNV; ++v) hn::Store(hn::LoadU(d, part.B + k * a.ldb + v * L), d, dst + k * w + v * L);
        } else {
          for (int64_t k = 0; k < kc; ++k) std::copy_n(part.B + k * a.ldb, w, dst + k * w);
        }
        part.B = dst;
        part.ldb = w;
      }
      Rows(part, r0, r1, 0, w);
    }
  }
  if (!via_scratch) return;
  for (int64_t m = m0; m < m1; ++m) {
    float* c = a.C + m * a.ldc;
    const float* s = &scratch[size_t((m - m0) * a.N)];
    for (int64_t n = 0; n < a.N; ++n) c[n] += s[n];
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace whale
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace whale {
HWY_EXPORT(SgemmRows);

void sgemm_rows_simd(const SgemmArgs& a, int64_t m0, int64_t m1) { HWY_DYNAMIC_DISPATCH(SgemmRows)(a, m0, m1); }

void sgemm(const SgemmArgs& a, ThreadPool& pool) {
  if (a.M <= 0 || a.N <= 0) return;
  if (a.K <= 0) {  // an empty sum
    if (!a.accumulate)
      for (int64_t m = 0; m < a.M; ++m) std::fill(a.C + m * a.ldc, a.C + m * a.ldc + a.N, 0.0f);
    return;
  }
  // Blocks of 6 rows (whole register tiles) shared out to the threads; with few rows (weight
  // gradients of small outputs) column blocks of 32 instead. Either way each element is one
  // tile's sum over k in order.
  const int64_t blocks = (a.M + 5) / 6;
  if (blocks >= 4 * int64_t(pool.size()) || a.N <= 32) {
    pool.parallel_for(blocks, [&](int64_t b0, int64_t b1) { sgemm_rows_simd(a, b0 * 6, std::min(a.M, b1 * 6)); });
    return;
  }
  pool.parallel_for((a.N + 31) / 32, [&](int64_t c0, int64_t c1) {
    SgemmArgs part = a;
    part.B = a.B + c0 * 32;
    part.C = a.C + c0 * 32;
    part.N = std::min(a.N, c1 * 32) - c0 * 32;
    sgemm_rows_simd(part, 0, a.M);
  });
}

void sgemm_reference(const SgemmArgs& a) {
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t n = 0; n < a.N; ++n) {
      float s = 0;
      for (int64_t k = 0; k < a.K; ++k) s += (a.trans_a ? a.A[k * a.lda + m] : a.A[m * a.lda + k]) * a.B[k * a.ldb + n];
      a.C[m * a.ldc + n] = a.accumulate ? a.C[m * a.ldc + n] + s : s;
    }
}

}  // namespace whale
#endif  // HWY_ONCE
