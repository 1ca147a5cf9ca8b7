// The AMX int8 kernel against the scalar reference (dot_q8_0), and its independence from how
// many tokens are computed together. Skipped, saying why, on CPUs without AMX.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "kernels/amx.h"
#include "kernels/quant.h"

namespace whale {
namespace {

struct Case {
  int64_t rows, cols;
};

TEST(Amx, Q8_0MatchesTheScalarReferenceForEveryTokenCount) {
  std::string why;
  if (!amx_int8_available(&why)) GTEST_SKIP() << "no AMX here: " << why;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (const Case c : {Case{16, 32}, Case{48, 256}, Case{37, 160}, Case{70, 1024}}) {
    const int64_t nb = c.cols / 32;
    std::vector<BlockQ8_0> w(size_t(c.rows * nb));
    std::vector<float> row(size_t(c.cols));
    for (int64_t r = 0; r < c.rows; ++r) {
      for (auto& v : row) v = nd(rng);
      quantize_q8_0(row.data(), c.cols, w.data() + r * nb);
    }
    const AmxQ8Weights packed = amx_repack_q8_0(w.data(), c.rows, c.cols);
    const int64_t T = 45;  // two full tiles of 16 tokens and a padded one of 13
    std::vector<float> x(size_t(T * c.cols));
    for (auto& v : x) v = 3 * nd(rng);
    std::vector<int8_t> q(size_t(T * c.cols));
    std::vector<float> d(size_t(T * nb));
    std::vector<int32_t> sum(size_t(T * nb));
    std::vector<ActQ8> act(size_t(T * nb));
    for (int64_t t = 0; t < T; ++t) {
      quantize_act_planar(x.data() + t * c.cols, c.cols, 32, q.data() + t * c.cols, d.data() + t * nb, sum.data() + t * nb);
      quantize_act(x.data() + t * c.cols, c.cols, 32, act.data() + t * nb);
    }
    std::vector<float> y(size_t(T * c.rows));
    amx_gemm_q8_0(packed, 0, packed.groups, q.data(), d.data(), c.cols, nb, T, y.data(), c.rows);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < c.rows; ++r) {
        const float ref = dot_q8_0(w.data() + r * nb, act.data() + t * nb, c.cols);
        ASSERT_NEAR(y[size_t(t * c.rows + r)], ref, 4e-6f * (std::fabs(ref) + 1) * float(nb))
            << c.rows << "x" << c.cols << " token " << t << " row " << r;
      }
    // Each token alone, and a range of row groups: bitwise the same numbers.
    for (int64_t t : {int64_t(0), int64_t(17), T - 1}) {
      std::vector<float> one(size_t(c.rows));
      amx_gemm_q8_0(packed, 0, packed.groups, q.data() + t * c.cols, d.data() + t * nb, c.cols, nb, 1, one.data(), c.rows);
      for (int64_t r = 0; r < c.rows; ++r) ASSERT_EQ(one[size_t(r)], y[size_t(t * c.rows + r)]) << "token " << t << " row " << r;
    }
    if (packed.groups > 1) {
      std::vector<float> part(size_t(T * c.rows));
      amx_gemm_q8_0(packed, 1, packed.groups, q.data(), d.data(), c.cols, nb, T, part.data(), c.rows);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t r = 16; r < c.rows; ++r) ASSERT_EQ(part[size_t(t * c.rows + r - 16)], y[size_t(t * c.rows + r)]);
    }
  }
}

TEST(Amx, RepackRefusesColumnsThatAreNotWholeBlocks) {
  std::vector<BlockQ8_0> w(2);
  EXPECT_THROW(amx_repack_q8_0(w.data(), 1, 48), Error);
}

}  // namespace
}  // namespace whale
