// Kernels against plain double-precision references, per storage type.
#include <cmath>
#include <cstring>
#include <random>
#include <limits>

#include "core/dtype.h"
#include "kernels/gemm_simd.h"
#include "kernels/matmul.h"
#include "kernels/reference.h"
#include "kernels/ops.h"
#include "kernels/attention.h"
#include "kernels/exp.h"
#include "simd_targets.h"
#include "test_util.h"

namespace whale {
namespace {

TEST(DType, Fp8E4M3DecodesKnownValues) {
  EXPECT_EQ(fp8_e4m3_to_f32(0x00), 0.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);      // exponent 7 = bias
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);    // max finite
  EXPECT_EQ(fp8_e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), 0.001953125f);  // smallest subnormal 2^-9
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0x7f)));
  for (int i = 0; i < 256; ++i) {
    const float v = fp8_e4m3_to_f32(uint8_t(i));
    if (!std::isnan(v) && i != 0x80) {  // -0 (0x80) encodes back as +0
      EXPECT_EQ(f32_to_fp8_e4m3(v), uint8_t(i)) << i;
    }
  }
  EXPECT_EQ(f32_to_fp8_e4m3(1000.0f), 0x7e);  // saturates
}

TEST(DType, HalfAndBfloatRoundTrip) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}) EXPECT_EQ(f16_to_f32(f32_to_f16(v)), v) << v;
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.140625f)), 3.140625f);
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);  // tie rounds to even
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(120), 1.0f / 128);
}

struct Matrix {
  std::vector<uint8_t> data;
  std::vector<float> scale;
  std::vector<double> real;  // the exact values the stored weight represents
  Weight w;
};

Matrix make_matrix(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Matrix m;
  m.w.dtype = t;
  m.w.rows = rows;
  m.w.cols = cols;
  m.data.resize(t == DType::F4_E2M1 ? size_t(rows * cols / 2) : size_t(rows * cols) * dtype_size(t));
  m.real.resize(size_t(rows * cols));
  if (t == DType::F4_E2M1) {  // DeepSeek-V4's experts: a power-of-two scale per 32 values of a row
    m.w.block_rows = 1;
    m.w.block_cols = 32;
    m.w.scale_cols = cols / 32;
    m.scale.resize(size_t(rows * m.w.scale_cols));
    for (auto& s : m.scale) s = std::ldexp(1.0f, int(std::lround(nd(rng) * 3)) - 3);
  }
  if (t == DType::F8_E4M3) {
    m.w.scale_cols = (cols + 127) / 128;
    m.scale.resize(size_t(((rows + 127) / 128) * m.w.scale_cols));
    for (auto& s : m.scale) s = std::ldexp(1.0f + std::abs(nd(rng)), -8);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = size_t(r * cols + c);
      const float v = nd(rng);
      switch (t) {
        case DType::F32: std::memcpy(&m.data[4 * i], &v, 4); m.real[i] = v; break;
        case DType::BF16: { uint16_t h = f32_to_bf16(v); std::memcpy(&m.data[2 * i], &h, 2); m.real[i] = bf16_to_f32(h); break; }
        case DType::F16: { uint16_t h = f32_to_f16(v); std::memcpy(&m.data[2 * i], &h, 2); m.real[i] = f16_to_f32(h); break; }
        case DType::F4_E2M1: {
          const uint8_t code = uint8_t(std::uniform_int_distribution<int>(0, 15)(rng));
          m.data[i / 2] = uint8_t(m.data[i / 2] | (code << (4 * (i % 2))));
          m.real[i] = double(fp4_e2m1_to_f32(code)) * m.scale[size_t(r * m.w.scale_cols + c / 32)];
          break;
        }
        case DType::F8_E4M3: {
          uint8_t q = f32_to_fp8_e4m3(v * 50);
          m.data[i] = q;
          m.real[i] = double(fp8_e4m3_to_f32(q)) * m.scale[size_t((r / 128) * m.w.scale_cols + c / 128)];
          break;
        }
        default: break;
      }
    }
  m.w.data = m.data.data();
  m.w.scale = m.scale.empty() ? nullptr : m.scale.data();
  return m;
}

class MatmulTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulTest, MatchesDoubleReferenceAndIsBatchInvariant) {
  std::mt19937 rng(42);
  ThreadPool pool(2);
  // Partial FP8 tiles in both directions; FP4 rows are whole blocks of 32.
  const int64_t rows = 200, cols = GetParam() == DType::F4_E2M1 ? 320 : 300, T = 5;
  Matrix m = make_matrix(GetParam(), rows, cols, rng);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(T * cols));
  for (auto& v : x) v = nd(rng);

  std::vector<float> y(static_cast<size_t>(T * rows));
  matmul(m.w, x.data(), T, y.data(), pool);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ref += m.real[size_t(r * cols + c)] * x[size_t(t * cols + c)];
        mag += std::fabs(m.real[size_t(r * cols + c)] * x[size_t(t * cols + c)]);
      }
      EXPECT_NEAR(y[size_t(t * rows + r)], ref, 1e-5 * mag + 1e-6) << "t " << t << " r " << r;
    }

  // One token at a time gives bitwise the same result as the batch.
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> one(static_cast<size_t>(rows));
    matmul(m.w, &x[size_t(t * cols)], 1, one.data(), pool);
    for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(one[size_t(r)], y[size_t(t * rows + r)]);
  }

  // Row bands and the transposed product.
  std::vector<float> band(static_cast<size_t>(T * 50));
  matmul_rows(m.w, 100, 150, x.data(), cols, T, band.data(), 50, pool);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < 50; ++r) EXPECT_EQ(band[size_t(t * 50 + r)], y[size_t(t * rows + 100 + r)]);
  std::vector<float> xr(static_cast<size_t>(rows)), yt(static_cast<size_t>(cols));
  for (auto& v : xr) v = nd(rng);
  matvec_transposed(m.w, 0, rows, xr.data(), yt.data());
  for (int64_t c = 0; c < cols; ++c) {
    double ref = 0, mag = 0;
    for (int64_t r = 0; r < rows; ++r) {
      ref += m.real[size_t(r * cols + c)] * xr[size_t(r)];
      mag += std::fabs(m.real[size_t(r * cols + c)] * xr[size_t(r)]);
    }
    EXPECT_NEAR(yt[size_t(c)], ref, 1e-5 * mag + 1e-6) << "c " << c;
  }
}

// The SIMD kernels against the plain scalar reference, for column counts around every vector
// width and for 1..9 tokens (tiles of 4 and their remainders).
TEST_P(MatmulTest, SimdMatchesScalarReference) {
  std::mt19937 rng(7);
  ThreadPool pool(2);
  std::printf("SIMD target: %s\n", simd_target_name());
  for (int64_t cols : {1, 3, 15, 16, 17, 31, 32, 64, 65, 96, 127, 128, 129, 160, 257, 1000}) {
    if (GetParam() == DType::F4_E2M1 && cols % 32) continue;
    Matrix m = make_matrix(GetParam(), 37, cols, rng);
    for (int64_t T : {1, 2, 3, 4, 5, 9}) {
      std::normal_distribution<float> nd;
      std::vector<float> x(static_cast<size_t>(T * cols)), y(static_cast<size_t>(T * 37)), ref(y.size());
      for (auto& v : x) v = nd(rng);
      matmul(m.w, x.data(), T, y.data(), pool);
      reference::matmul_rows(m.w, 0, 37, x.data(), cols, T, ref.data(), 37);
      for (size_t i = 0; i < y.size(); ++i) {
        double mag = 0;
        const int64_t t = int64_t(i) / 37, r = int64_t(i) % 37;
        for (int64_t c = 0; c < cols; ++c) mag += std::fabs(m.real[size_t(r * cols + c)] * x[size_t(t * cols + c)]);
        ASSERT_NEAR(y[i], ref[i], 1e-5 * mag + 1e-6) << "cols " << cols << " T " << T << " i " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulTest, ::testing::Values(DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::F4_E2M1),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Ops, RmsnormSoftmaxRope) {
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 0.5f, 2, 1}, out(4);
  rmsnorm(x.data(), w.data(), 4, 1e-6f, out.data());
  const double inv = 1 / std::sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
  EXPECT_NEAR(out[2], 3 * inv * 2, 1e-6);

  std::vector<float> s = {1, 2, -INFINITY, 3};
  softmax_inplace(s.data(), 4);
  EXPECT_EQ(s[2], 0.0f);
  EXPECT_NEAR(s[0] + s[1] + s[3], 1.0, 1e-6);
  EXPECT_NEAR(s[3] / s[1], std::exp(1.0), 1e-5);

  std::vector<float> v = {1, 0, 0, 2}, c = {0, 1}, sn = {1, 0};
  rope_interleaved(v.data(), c.data(), sn.data(), 2);  // pair 0 rotated by 90°, pair 1 by 0°
  EXPECT_NEAR(v[0], 0, 1e-7);
  EXPECT_NEAR(v[1], 1, 1e-7);
  EXPECT_EQ(v[3], 2);
}

TEST(ThreadPool, RunsEveryIndexOnceAndNests) {
  ThreadPool pool(2);
  std::vector<int> hits(1000, 0);
  for (int rep = 0; rep < 50; ++rep)
    pool.parallel_for(1000, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
      pool.parallel_for(3, [](int64_t, int64_t) {});  // nested: runs inline, no deadlock
    });
  for (int h : hits) EXPECT_EQ(h, 50);
}

}  // namespace
}  // namespace whale

namespace whale {
namespace {
// The bit-trick f16 decoder against the definition, for all 65536 encodings.
TEST(Dtype, F16ToF32IsExactForEveryEncoding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float want;
    if (exp == 0) want = std::ldexp(float(mant), -24);
    else if (exp == 31) want = mant ? NAN : INFINITY;
    else want = std::ldexp(float(mant | 0x400), exp - 25);
    if (sign) want = -want;
    const float got = f16_to_f32(uint16_t(h));
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << h;
    else EXPECT_EQ(got, want) << h;
  }
}
}  // namespace
}  // namespace whale

#include "kernels/sgemm.h"

namespace whale {
namespace {

TEST(Sgemm, MatchesTheScalarReferenceOnAllTileShapes) {
  ThreadPool one(1), two(2);
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(-1, 1);
  for (ThreadPool* pool : {&two, &one})  // one thread: a call gets all 61 rows, enough to copy B panels
  for (int64_t M : {1, 5, 6, 7, 13, 40, 61})
    for (int64_t N : {1, 3, 8, 16, 17, 33, 64, 80, 100, 128})
      for (int64_t K : {1, 2, 31, 96, 300, 520})  // past 256: K blocks, sums resumed from C
        for (int mode = 0; mode < 4; ++mode) {
          const bool acc = mode & 1, ta = mode & 2;
          const int64_t lda = ta ? M + 3 : K + 3, ldb = N + 5, ldc = N + 2;  // padded rows: only the matrix is touched
          std::vector<float> A(size_t((ta ? K : M) * lda)), B(size_t(K * ldb)), C(size_t(M * ldc)), R;
          for (float& v : A) v = u(g);
          for (float& v : B) v = u(g);
          for (float& v : C) v = u(g);
          R = C;
          sgemm(SgemmArgs{M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, acc, ta}, *pool);
          sgemm_reference(SgemmArgs{M, N, K, A.data(), lda, B.data(), ldb, R.data(), ldc, acc, ta});
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < ldc; ++n) {
              const size_t i = size_t(m * ldc + n);
              if (n >= N) ASSERT_EQ(C[i], R[i]) << "padding written at " << m << "," << n;
              else ASSERT_NEAR(C[i], R[i], 1e-5f * float(K + 1)) << M << "x" << N << "x" << K << " mode " << mode << " at " << m << "," << n;
            }
        }
}

TEST(Sgemm, ResultsDoNotDependOnTheThreadCount) {
  ThreadPool one(1), two(2);
  for (int64_t K : {40, 700})
    for (int mode = 0; mode < 4; ++mode) {
      const bool acc = mode & 1, ta = mode & 2;
      const int64_t M = 110, N = 70, lda = ta ? M : K;  // one thread: B panels copied; two: row halves
      std::vector<float> A(size_t(M * K)), B(size_t(K * N)), C1(size_t(M * N), 0.5f), C2 = C1;
      for (size_t i = 0; i < A.size(); ++i) A[i] = float(std::sin(double(i)));
      for (size_t i = 0; i < B.size(); ++i) B[i] = float(std::cos(double(i)));
      sgemm(SgemmArgs{M, N, K, A.data(), lda, B.data(), N, C1.data(), N, acc, ta}, one);
      sgemm(SgemmArgs{M, N, K, A.data(), lda, B.data(), N, C2.data(), N, acc, ta}, two);
      EXPECT_EQ(C1, C2) << "K " << K << " mode " << mode;
    }
}

}  // namespace
}  // namespace whale

#include "train/grad_ops.h"

namespace whale {
namespace {

TEST(TrainAttention, GemmVersionMatchesTheScalarReference) {
  std::mt19937 g(9);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t T : {1, 7, 33})
    for (auto [dk, dv] : {std::pair<int64_t, int64_t>{48, 32}, {5, 3}}) {
      const int64_t ldq = dk + 4, ldk = dk + 2, ldv = dv + 6, ldo = dv + 1;  // strided rows, as heads are
      std::vector<float> q(size_t(T * ldq)), k(size_t(T * ldk)), v(size_t(T * ldv)), d_o(size_t(T * ldo));
      for (auto* vec : {&q, &k, &v, &d_o})
        for (float& x : *vec) x = u(g);
      std::vector<float> P1(size_t(T * T)), P2(P1), o1(size_t(T * ldo), 7.0f), o2(o1);
      train::attention_forward(q.data(), ldq, k.data(), ldk, v.data(), ldv, T, dk, dv, 0.3f, P1.data(), o1.data(), ldo);
      train::attention_forward_reference(q.data(), ldq, k.data(), ldk, v.data(), ldv, T, dk, dv, 0.3f, P2.data(), o2.data(), ldo);
      for (size_t i = 0; i < P1.size(); ++i) ASSERT_NEAR(P1[i], P2[i], 1e-5f);
      for (size_t i = 0; i < o1.size(); ++i) ASSERT_NEAR(o1[i], o2[i], 1e-5f) << i;
      std::vector<float> dq1(q.size(), 0.5f), dk1(k.size(), 0.5f), dv1(v.size(), 0.5f), dq2(dq1), dk2(dk1), dv2(dv1);
      train::attention_backward(q.data(), ldq, k.data(), ldk, v.data(), ldv, P1.data(), d_o.data(), ldo, T, dk, dv, 0.3f,
                                dq1.data(), dk1.data(), dv1.data());
      train::attention_backward_reference(q.data(), ldq, k.data(), ldk, v.data(), ldv, P2.data(), d_o.data(), ldo, T, dk,
                                          dv, 0.3f, dq2.data(), dk2.data(), dv2.data());
      for (size_t i = 0; i < dq1.size(); ++i) ASSERT_NEAR(dq1[i], dq2[i], 1e-4f) << "dq " << i;
      for (size_t i = 0; i < dk1.size(); ++i) ASSERT_NEAR(dk1[i], dk2[i], 1e-4f) << "dk " << i;
      for (size_t i = 0; i < dv1.size(); ++i) ASSERT_NEAR(dv1[i], dv2[i], 1e-4f) << "dv " << i;
    }
}

}  // namespace
}  // namespace whale

#include "kernels/swiglu.h"

namespace whale {
namespace {

// The vectorized SwiGLU (Highway Exp) against the scalar definition in train/grad_ops, on lengths
// around the vector width (tails) and on gates far into both saturated ends.
TEST(Swiglu, SimdMatchesTheScalarReference) {
  std::mt19937 g(11);
  std::uniform_real_distribution<float> wide(-120, 120), narrow(-6, 6);
  ThreadPool pool(2);
  for (int64_t n : {1, 3, 15, 16, 17, 33, 100, 9000})
    for (auto* dist : {&wide, &narrow}) {
      std::vector<float> gate(static_cast<size_t>(n)), up(gate), dh(gate);
      for (int64_t i = 0; i < n; ++i) gate[size_t(i)] = (*dist)(g), up[size_t(i)] = narrow(g), dh[size_t(i)] = narrow(g);
      std::vector<float> h1(size_t(n) + 1, 9.0f), h2(h1);  // one guard element past the end
      swiglu_forward(gate.data(), up.data(), n, h1.data(), pool);
      train::swiglu_forward(gate.data(), up.data(), n, h2.data());
      std::vector<float> dg1(size_t(n) + 1, 0.25f), du1(dg1), dg2(dg1), du2(dg1);
      swiglu_backward(gate.data(), up.data(), dh.data(), n, dg1.data(), du1.data(), pool);
      train::swiglu_backward(gate.data(), up.data(), dh.data(), n, dg2.data(), du2.data());
      auto near = [](float a, float b) { return std::fabs(a - b) <= 2e-6f * std::max(1.0f, std::fabs(b)); };
      for (size_t i = 0; i <= size_t(n); ++i) {
        ASSERT_TRUE(near(h1[i], h2[i])) << "h n=" << n << " i=" << i << " g=" << gate[std::min(i, size_t(n - 1))] << ": " << h1[i] << " vs " << h2[i];
        ASSERT_TRUE(near(dg1[i], dg2[i])) << "dg n=" << n << " i=" << i << ": " << dg1[i] << " vs " << dg2[i];
        ASSERT_TRUE(near(du1[i], du2[i])) << "du n=" << n << " i=" << i << ": " << du1[i] << " vs " << du2[i];
      }
    }
}

// n_rows rows of `width` floats as a paged cache hands them out: out of order, at offsets that
// break vector alignment, with gaps between them. `storage` holds them.
std::vector<const float*> scattered_rows(std::vector<float>& storage, int64_t n_rows, int64_t width,
                                         std::mt19937& g) {
  std::uniform_real_distribution<float> u(-1, 1);
  storage.resize(size_t(n_rows * (width + 40)));
  for (auto& v : storage) v = u(g);
  std::vector<const float*> rows(static_cast<size_t>(n_rows));
  for (int64_t j = 0; j < n_rows; ++j) rows[size_t(j)] = &storage[size_t(((j * 7) % n_rows) * (width + 40) + j % 3)];
  return rows;
}

// Decode's attention-weighted latent sum on every instruction set this CPU has: head counts
// around the 8-head register tile, column ranges with partial vectors and offsets, rows that are
// not contiguous (paged cache). Bitwise equal to the fused scalar loop on x86 targets with FMA
// (AVX2 and the AVX-512 ones), within rounding on the others.
TEST(WeightedRows, SimdMatchesTheScalarReference) {
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(-1, 1);
  test::for_each_simd_target([&](int64_t target) {
    for (int64_t H : {1, 8, 16, 19})
      for (int64_t n_rows : {1, 7, 70}) {
        const int64_t width = 600;
        std::vector<float> storage, p(size_t(n_rows * H));
        for (auto& v : p) v = u(g);
        const std::vector<const float*> rows = scattered_rows(storage, n_rows, width, g);
        for (auto [c0, c1] : {std::pair<int64_t, int64_t>{0, 512}, {16, 80}, {3, 600}, {512, 515}}) {
          std::vector<float> got(size_t(H * width), -7.0f), want(got);
          weighted_rows(p.data(), H, rows.data(), n_rows, c0, c1, got.data(), width);
          weighted_rows_reference(p.data(), H, rows.data(), n_rows, c0, c1, want.data(), width);
          for (size_t k = 0; k < got.size(); ++k) {
            if (HWY_ARCH_X86 && target <= HWY_AVX2) ASSERT_EQ(got[k], want[k]) << "H " << H << " rows " << n_rows << " at " << k;
            else ASSERT_NEAR(got[k], want[k], 1e-5f) << "H " << H << " rows " << n_rows << " at " << k;
          }
        }
      }
  });
}

// Decode's scores on every instruction set: head counts around the 4-head tile, widths with and
// without a partial vector, non-contiguous rows; within float rounding of the in-order sum.
TEST(DotRows, SimdMatchesTheScalarReference) {
  std::mt19937 g(9);
  std::uniform_real_distribution<float> u(-1, 1);
  test::for_each_simd_target([&](int64_t) {
    for (int64_t H : {1, 4, 8, 19})
      for (int64_t n_rows : {1, 7, 70})
        for (int64_t width : {3, 16, 288, 576, 581}) {
          const int64_t ldq = width + 5;
          std::vector<float> storage, q(size_t(H * ldq));
          for (auto& v : q) v = u(g);
          const std::vector<const float*> rows = scattered_rows(storage, n_rows, width, g);
          const int64_t ld_out = n_rows + 2;
          std::vector<float> got(size_t(H * ld_out), -7.0f), want(got);
          dot_rows(q.data(), H, ldq, rows.data(), n_rows, width, 0.125f, got.data(), ld_out);
          dot_rows_reference(q.data(), H, ldq, rows.data(), n_rows, width, 0.125f, want.data(), ld_out);
          for (size_t k = 0; k < got.size(); ++k)
            ASSERT_NEAR(got[k], want[k], 1e-5f * float(width)) << "H " << H << " rows " << n_rows << " width " << width << " at " << k;
        }
  });
}

// The vectorized softmax against ops.h's softmax_inplace: lengths around the vector width,
// large and tiny spreads, masked (−inf) entries and an all-masked row.
TEST(Softmax, SimdMatchesTheReference) {
  std::mt19937 g(11);
  test::for_each_simd_target([&](int64_t) {
    for (float spread : {0.01f, 3.0f, 60.0f})
      for (int64_t n : {1, 5, 16, 17, 64, 130, 1000}) {
        std::normal_distribution<float> nd(0.0f, spread);
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = nd(g);
        if (n > 3) x[2] = -std::numeric_limits<float>::infinity();
        std::vector<float> got(x), want(x);
        softmax(got.data(), n);
        softmax_inplace(want.data(), n);
        double total = 0;
        for (int64_t k = 0; k < n; ++k) {
          ASSERT_NEAR(got[size_t(k)], want[size_t(k)], 1e-6f + 1e-5f * want[size_t(k)]) << "n " << n << " at " << k;
          total += got[size_t(k)];
        }
        ASSERT_NEAR(total, 1.0, 1e-5);
        if (n > 3) {
          ASSERT_EQ(got[2], 0.0f);
        }
      }
    std::vector<float> masked(40, -std::numeric_limits<float>::infinity());
    softmax(masked.data(), 40);
    for (float v : masked) ASSERT_EQ(v, 0.0f);
  });
}

// The sampler's exp: every target gives the scalar twin's bits (so a seed draws the same
// tokens on every machine), and the twin stays within 2 ulp of e^x.
TEST(SamplingExp, EveryTargetGivesTheScalarTwinsBitsWithin2UlpOfExp) {
  std::mt19937 g(5);
  std::vector<float> x;
  for (float v : {0.0f, -0.0f, -1e-30f, -0.3465f, -0.3466f, -1.0f, -10.5f, -85.99f, -86.0f, -86.01f, -87.5f, -200.0f})
    x.push_back(v);
  x.push_back(-std::numeric_limits<float>::infinity());
  std::uniform_real_distribution<float> wide(-90.0f, 0.0f), near(-2.0f, 0.0f);
  for (int i = 0; i < 4000; ++i) x.push_back(i % 2 ? wide(g) : near(g));
  const float shift = 1.75f;  // exp_shifted subtracts it: inputs relative to a maximum
  std::vector<float> shifted(x.size());
  for (size_t i = 0; i < x.size(); ++i) shifted[i] = x[i] + shift;
  for (size_t i = 0; i < x.size(); ++i) {  // the twin against e^x (of the value it is given)
    const float v = shifted[i] - shift, e = exp_nonpositive(v);
    if (!(v >= -86.0f)) {
      ASSERT_EQ(e, 0.0f) << v;
      continue;
    }
    const double want = std::exp(double(v));
    const double ulp = std::nextafter(float(want), INFINITY) - float(want);
    ASSERT_LE(std::abs(double(e) - want), 2 * ulp) << "x " << v;
  }
  test::for_each_simd_target([&](int64_t) {
    for (size_t n : {size_t(1), size_t(7), size_t(16), size_t(33), x.size()}) {
      std::vector<float> got(n);
      exp_shifted(shifted.data(), shift, int64_t(n), got.data());
      for (size_t i = 0; i < n; ++i) {
        const float want = exp_nonpositive(shifted[i] - shift);
        ASSERT_EQ(std::memcmp(&got[i], &want, 4), 0) << "x " << shifted[i] - shift << ": " << got[i] << " vs " << want;
      }
    }
    std::vector<float> inplace(shifted);  // out may be x
    exp_shifted(inplace.data(), shift, int64_t(inplace.size()), inplace.data());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(inplace[i], exp_nonpositive(shifted[i] - shift));
  });
}

}  // namespace
}  // namespace whale
