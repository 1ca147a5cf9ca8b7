// Products of Q8_0, Q4_0, Q5_0, MXFP4, Q4_K and Q6_K weights on AVX-512 VNNI, AVX2 and AMX against
// the scalar references (dot_q8_0, ...): bit for bit, for every number of tokens on either side
// of kAmxMinTokens and rows that do not fill a group of 16, so the choice of kernel never changes
// a number. Skipped, saying why, where this CPU has none of them.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/amx.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_simd.h"
#include "simd_targets.h"

namespace whale {
namespace {

struct Case {
  int64_t rows, cols;
};

// Per block type: its DType, quantizer and scalar reference.
template <class Block> struct Type;
template <> struct Type<BlockQ8_0> {
  static constexpr DType dtype = DType::Q8_0;
  static void quantize(const float* x, int64_t n, BlockQ8_0* out) { quantize_q8_0(x, n, out); }
  static float dot(const BlockQ8_0* w, const ActQ8* x, int64_t n) { return dot_q8_0(w, x, n); }
};
template <> struct Type<BlockQ4_0> {
  static constexpr DType dtype = DType::Q4_0;
  static void quantize(const float* x, int64_t n, BlockQ4_0* out) { quantize_q4_0(x, n, out); }
  static float dot(const BlockQ4_0* w, const ActQ8* x, int64_t n) { return dot_q4_0(w, x, n); }
};
template <> struct Type<BlockQ5_0> {
  static constexpr DType dtype = DType::Q5_0;
  static void quantize(const float* x, int64_t n, BlockQ5_0* out) { quantize_q5_0(x, n, out); }
  static float dot(const BlockQ5_0* w, const ActQ8* x, int64_t n) { return dot_q5_0(w, x, n); }
};
template <> struct Type<BlockMXFP4> {
  static constexpr DType dtype = DType::MXFP4;
  static void quantize(const float* x, int64_t n, BlockMXFP4* out) { quantize_mxfp4(x, n, out); }
  static float dot(const BlockMXFP4* w, const ActQ8* x, int64_t n) { return dot_mxfp4(w, x, n); }
};

template <> struct Type<BlockQ4_K> {
  static constexpr DType dtype = DType::Q4_K;
  static void quantize(const float* x, int64_t n, BlockQ4_K* out) { quantize_q4_k(x, n, out); }
  static float dot(const BlockQ4_K* w, const ActQ8* x, int64_t n) { return dot_q4_k(w, x, n); }
};

template <> struct Type<BlockQ6_K> {
  static constexpr DType dtype = DType::Q6_K;
  static void quantize(const float* x, int64_t n, BlockQ6_K* out) { quantize_q6_k(x, n, out); }
  static float dot(const BlockQ6_K* w, const ActQ8* x, int64_t n) { return dot_q6_k(w, x, n); }
};

template <class Block>
struct Problem {
  using Ty = Type<Block>;
  int64_t rows, cols, nb, T;
  std::vector<Block> w;
  std::vector<float> x;
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int32_t> sum;
  std::vector<ActQ8> act;
  Problem(Case c, int64_t T, std::mt19937& rng) : rows(c.rows), cols(c.cols), nb(c.cols / 32), T(T) {
    const int64_t per_block = dtype_block_elems(Ty::dtype), span = act_scale_span(Ty::dtype);
    std::normal_distribution<float> nd;
    w.resize(size_t(rows * cols / per_block));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : row) v = nd(rng);
      Ty::quantize(row.data(), cols, w.data() + r * cols / per_block);
    }
    x.resize(size_t(T * cols));
    for (auto& v : x) v = 3 * nd(rng);
    q.resize(size_t(T * cols));
    d.resize(size_t(T * nb));
    sum.resize(size_t(T * nb));
    act.resize(size_t(T * nb));
    for (int64_t t = 0; t < T; ++t) {
      quantize_act_planar(x.data() + t * cols, cols, span, q.data() + t * cols, d.data() + t * nb, sum.data() + t * nb);
      quantize_act(x.data() + t * cols, cols, span, act.data() + t * nb);
    }
  }
  // Tokens [t0, t0 + n) through one kernel, rows [r0, r1).
  std::vector<float> run(bool amx, int64_t t0, int64_t n, int64_t r0, int64_t r1) const {
    std::vector<float> y(size_t(n * (r1 - r0)));
    QuantGemmArgs a{Ty::dtype, reinterpret_cast<const uint8_t*>(w.data()), dtype_row_bytes(Ty::dtype, cols), cols, r0, r1,
                    ActArgs{q.data() + t0 * cols, d.data() + t0 * nb, sum.data() + t0 * nb, cols, nb}, n, y.data(), r1 - r0};
    if (amx) amx_gemm(a);
    else {
      a.amx = false;
      quant_gemm_rows_simd(a);
    }
    return y;
  }
  float ref(int64_t t, int64_t r) const { return Ty::dot(w.data() + r * (cols / dtype_block_elems(Ty::dtype)), act.data() + t * nb, cols); }
};

template <class Block>
void expect_reference(bool amx) {
  std::mt19937 rng(7);
  for (Case c : {Case{16, 32}, Case{48, 256}, Case{37, 160}, Case{70, 1024}}) {
    c.cols = (c.cols + dtype_block_elems(Type<Block>::dtype) - 1) / dtype_block_elems(Type<Block>::dtype) * dtype_block_elems(Type<Block>::dtype);
    const Problem<Block> p(c, 45, rng);  // two full tiles of 16 tokens and a padded one of 13
    for (int64_t n : {int64_t(1), int64_t(3), int64_t(8), int64_t(9), int64_t(16), int64_t(45)}) {
      const int64_t t0 = p.T - n;
      for (const int64_t r0 : {int64_t(0), c.rows > 16 ? int64_t(16) : int64_t(0)}) {
        const int64_t r1 = c.rows;
        const std::vector<float> y = p.run(amx, t0, n, r0, r1);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = r0; r < r1; ++r)
            ASSERT_EQ(y[size_t(t * (r1 - r0) + r - r0)], p.ref(t0 + t, r))
                << dtype_name(Type<Block>::dtype) << (amx ? " AMX " : " SIMD ") << c.rows << "x" << c.cols << ", " << n << " tokens, token " << t << " row " << r;
      }
    }
  }
}

void expect_all(bool amx) {
  expect_reference<BlockQ8_0>(amx);
  expect_reference<BlockQ4_0>(amx);
  expect_reference<BlockQ5_0>(amx);
  expect_reference<BlockMXFP4>(amx);
  expect_reference<BlockQ4_K>(amx);
  expect_reference<BlockQ6_K>(amx);
}

TEST(QuantKernels, VnniEqualsTheScalarReferenceBitForBit) {
  if (!quant_simd_vnni()) GTEST_SKIP() << "the kernels chosen here do not use AVX-512 VNNI";
  expect_all(false);
}

// Every instruction set this CPU supports whose kernels are exact (AVX2 included where the best
// target is AVX-512, so machines of either kind test both).
TEST(QuantKernels, EveryExactTargetEqualsTheScalarReferenceBitForBit) {
  int tested = 0;
  test::for_each_simd_target([&](int64_t) {
    if (!quant_simd_exact()) return;
    expect_all(false);
    ++tested;
  });
  if (tested == 0) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512 VNNI";
}

TEST(QuantKernels, AmxEqualsTheScalarReferenceBitForBit) {
  std::string why;
  if (!amx_int8_available(&why)) GTEST_SKIP() << "no AMX here: " << why;
  expect_all(true);
}

// matmul() across kAmxMinTokens: a token's numbers are the same alone and in a prompt, on any
// machine (on one without VNNI both sides take the same portable kernel).
template <class Block>
void expect_batch_invariant() {
  std::mt19937 rng(11);
  const Problem<Block> p(Case{40, 512}, 2 * kAmxMinTokens + 3, rng);
  Weight w;
  w.dtype = Type<Block>::dtype;
  w.rows = p.rows;
  w.cols = p.cols;
  w.data = reinterpret_cast<const uint8_t*>(p.w.data());
  ThreadPool pool{2};
  std::vector<float> all(size_t(p.T * p.rows));
  matmul(w, p.x.data(), p.T, all.data(), pool);
  for (int64_t t = 0; t < p.T; t += 5) {
    std::vector<float> one(size_t(p.rows));
    matmul(w, p.x.data() + t * p.cols, 1, one.data(), pool);
    for (int64_t r = 0; r < p.rows; ++r)
      ASSERT_EQ(one[size_t(r)], all[size_t(t * p.rows + r)]) << dtype_name(w.dtype) << " token " << t << " row " << r;
  }
}

TEST(QuantKernels, MatmulGivesATokenTheSameNumbersAloneAndInAPrompt) {
  expect_batch_invariant<BlockQ8_0>();
  expect_batch_invariant<BlockQ4_0>();
  expect_batch_invariant<BlockQ5_0>();
  expect_batch_invariant<BlockMXFP4>();
  expect_batch_invariant<BlockQ4_K>();
  expect_batch_invariant<BlockQ6_K>();
}

}  // namespace
}  // namespace whale
