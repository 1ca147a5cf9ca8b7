// Block-quantized formats: bit layouts against llama.cpp's gguf-py, quantizer accuracy, and the
// SIMD kernels against the scalar reference.
// quant_simd.cpp also builds Highway's AVX3_DL target; so must this file's list of targets
// (hwy::SupportedAndGeneratedTargets is the list of the file that calls it).
#define HWY_WANT_AVX3_DL

#include <algorithm>
#include <random>

#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_simd.h"
#include "kernels/reference.h"
#include "simd_targets.h"
#include "test_util.h"

namespace whale {
namespace {

TEST(Quant, LayoutsMatchGgufPy) {
  auto j = nlohmann::json::parse(test::read_file(test::golden_dir("quant_blocks.json")));
  for (const auto& b : j["blocks"]) {
    auto bytes = b["bytes"].get<std::vector<uint8_t>>();
    auto expected = b["values"].get<std::vector<float>>();
    std::vector<float> got(expected.size());
    const std::string type = b["type"];
    if (type == "Q8_0") dequantize_q8_0(reinterpret_cast<const BlockQ8_0*>(bytes.data()), 32, got.data());
    else if (type == "Q4_0") dequantize_q4_0(reinterpret_cast<const BlockQ4_0*>(bytes.data()), 32, got.data());
    else if (type == "Q5_0") dequantize_q5_0(reinterpret_cast<const BlockQ5_0*>(bytes.data()), 32, got.data());
    else if (type == "Q4_K") dequantize_q4_k(reinterpret_cast<const BlockQ4_K*>(bytes.data()), 256, got.data());
    else if (type == "MXFP4") dequantize_mxfp4(reinterpret_cast<const BlockMXFP4*>(bytes.data()), 32, got.data());
    else dequantize_q6_k(reinterpret_cast<const BlockQ6_K*>(bytes.data()), 256, got.data());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], expected[i], 1e-6 * (1 + std::fabs(expected[i]))) << type << " " << i;
  }
  size_t types = 0;
  for (const auto& q : j["quantize"]) {  // Q8_0, Q4_0, Q5_0 quantization give gguf-py's bytes
    auto x = q["x"].get<std::vector<float>>();
    auto expected = q["bytes"].get<std::vector<uint8_t>>();
    const std::string type = q["type"];
    std::vector<uint8_t> out(expected.size() + 64);
    if (type == "Q8_0") quantize_q8_0(x.data(), int64_t(x.size()), reinterpret_cast<BlockQ8_0*>(out.data()));
    else if (type == "Q4_0") quantize_q4_0(x.data(), int64_t(x.size()), reinterpret_cast<BlockQ4_0*>(out.data()));
    else if (type == "Q5_0") quantize_q5_0(x.data(), int64_t(x.size()), reinterpret_cast<BlockQ5_0*>(out.data()));
    else if (type == "MXFP4") quantize_mxfp4(x.data(), int64_t(x.size()), reinterpret_cast<BlockMXFP4*>(out.data()));
    else FAIL() << type;
    ++types;
    EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + std::ptrdiff_t(expected.size())), expected) << type;
  }
  EXPECT_EQ(types, 4u);
}

template <class Block>
double relative_rmse(void (*quantize)(const float*, int64_t, Block*), void (*dequantize)(const Block*, int64_t, float*),
                     int64_t per_block) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int64_t n = per_block * 64;
  std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  std::vector<Block> q(static_cast<size_t>(n / per_block));
  quantize(x.data(), n, q.data());
  dequantize(q.data(), n, y.data());
  double err = 0, ref = 0;
  for (int64_t i = 0; i < n; ++i) err += (x[size_t(i)] - y[size_t(i)]) * (x[size_t(i)] - y[size_t(i)]), ref += x[size_t(i)] * x[size_t(i)];
  return std::sqrt(err / ref);
}

TEST(Quant, QuantizersAreAccurate) {
  EXPECT_LT(relative_rmse(quantize_q8_0, dequantize_q8_0, 32), 0.01);   // 8 bits
  EXPECT_LT(relative_rmse(quantize_q6_k, dequantize_q6_k, 256), 0.04);  // 6 bits
  EXPECT_LT(relative_rmse(quantize_q4_k, dequantize_q4_k, 256), 0.12);  // 4 bits
  EXPECT_LT(relative_rmse(quantize_q5_0, dequantize_q5_0, 32), 0.08);   // 5 bits, symmetric
  EXPECT_LT(relative_rmse(quantize_q4_0, dequantize_q4_0, 32), 0.16);   // 4 bits, symmetric
  EXPECT_LT(relative_rmse(quantize_mxfp4, dequantize_mxfp4, 32), 0.2);  // e2m1 with a power-of-two scale
}

// Activations round half to even (lrintf's default), ties included: each block's largest value
// is 127 steps, so a value of k.5 steps is an exact tie.
TEST(Quant, ActivationsRoundHalfToEven) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> x(32 * 64);
  // Even blocks: |x| ≤ 127 = the block's first value, so the scale is exactly 1 and the k.5 values
  // are exact ties. Odd blocks: Gaussian values, any scale.
  for (size_t i = 0; i < x.size(); ++i) {
    const bool ties = (i / 32) % 2 == 0;
    if (!ties) x[i] = 40.0f * nd(rng);
    else x[i] = i % 32 == 0 ? 127.0f : (i % 5 == 0 ? float(int(i % 250) - 125) + 0.5f : std::clamp(40.0f * nd(rng), -126.0f, 126.0f));
  }
  std::vector<ActQ8> q(64);
  quantize_act(x.data(), int64_t(x.size()), 32, q.data());
  for (size_t b = 0; b < q.size(); ++b) {
    float amax = 0;
    for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x[b * 32 + size_t(k)]));
    const float id = 127.0f / amax;
    int sum = 0;
    for (int k = 0; k < 32; ++k) {
      const long want = std::lrintf(x[b * 32 + size_t(k)] * id);
      ASSERT_EQ(q[b].q[k], want) << "block " << b << " value " << x[b * 32 + size_t(k)];
      sum += int(want);
    }
    ASSERT_EQ(q[b].sum, sum);
  }
}

// K-type activations: one scale per 256 values (the largest of the 256 is 127 steps), repeated in
// each of the eight blocks, with the blocks' own sums; act_scale_span names the span per type.
TEST(Quant, SuperBlockActivationsShareOneScale) {
  EXPECT_EQ(act_scale_span(DType::Q8_0), 32);
  EXPECT_EQ(act_scale_span(DType::Q5_0), 32);
  EXPECT_EQ(act_scale_span(DType::Q4_K), 256);
  EXPECT_EQ(act_scale_span(DType::Q6_K), 256);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> x(256 * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (i / 32 % 8 == 3 ? 20.0f : 1.0f);  // one loud block per 256
  std::vector<ActQ8> q(x.size() / 32);
  quantize_act(x.data(), int64_t(x.size()), 256, q.data());
  for (size_t sb = 0; sb < 3; ++sb) {
    float amax = 0;
    for (size_t k = 0; k < 256; ++k) amax = std::max(amax, std::fabs(x[sb * 256 + k]));
    for (size_t b = sb * 8; b < sb * 8 + 8; ++b) {
      ASSERT_EQ(q[b].d, amax / 127.0f) << "block " << b;
      int sum = 0;
      for (int k = 0; k < 32; ++k) {
        const long want = std::lrintf(x[b * 32 + size_t(k)] * (127.0f / amax));
        ASSERT_EQ(q[b].q[k], want) << "block " << b;
        sum += int(want);
      }
      ASSERT_EQ(q[b].sum, sum);
    }
  }
}

// The vectorized activation quantizer gives the scalar reference's bytes on every instruction
// set: exact ties (k.5 steps), all-zero blocks, both spans.
TEST(Quant, SimdActivationsMatchTheReferenceBitwise) {
  std::mt19937 rng(8);
  std::normal_distribution<float> nd;
  std::vector<float> x(256 * 6);
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t block = i / 32;
    if (block == 5) x[i] = 0.0f;                                         // an all-zero block
    else if (block % 8 == 2) x[i] = i % 32 == 0 ? 127.0f : float(int(i % 200) - 100) + 0.5f;  // ties
    else x[i] = nd(rng) * (block % 3 == 0 ? 30.0f : 1.0f);
  }
  std::fill(x.begin() + 256 * 4, x.begin() + 256 * 5, 0.0f);  // an all-zero super-block
  test::for_each_simd_target([&](int64_t) {
    for (int64_t span : {32, 256}) {
      const int64_t n = int64_t(x.size());
      std::vector<int8_t> q1(x.size()), q2(x.size());
      std::vector<float> d1(x.size() / 32), d2(d1.size());
      std::vector<int32_t> s1(d1.size()), s2(d1.size());
      quantize_act_planar(x.data(), n, span, q1.data(), d1.data(), s1.data());
      quantize_act_planar_simd(x.data(), n, span, q2.data(), d2.data(), s2.data());
      ASSERT_EQ(q1, q2) << "span " << span;
      ASSERT_EQ(d1, d2) << "span " << span;
      ASSERT_EQ(s1, s2) << "span " << span;
    }
  });
}

// A matrix of `type` from Gaussian weights, quantized.
Weight quantized_weight(DType type, int64_t rows, int64_t cols, std::vector<uint8_t>& storage, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  storage.assign(size_t(rows) * dtype_row_bytes(type, cols), 0);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = nd(rng);
    uint8_t* dst = storage.data() + size_t(r) * dtype_row_bytes(type, cols);
    if (type == DType::Q8_0) quantize_q8_0(row.data(), cols, reinterpret_cast<BlockQ8_0*>(dst));
    else if (type == DType::Q4_0) quantize_q4_0(row.data(), cols, reinterpret_cast<BlockQ4_0*>(dst));
    else if (type == DType::Q5_0) quantize_q5_0(row.data(), cols, reinterpret_cast<BlockQ5_0*>(dst));
    else if (type == DType::Q4_K) quantize_q4_k(row.data(), cols, reinterpret_cast<BlockQ4_K*>(dst));
    else if (type == DType::MXFP4) quantize_mxfp4(row.data(), cols, reinterpret_cast<BlockMXFP4*>(dst));
    else quantize_q6_k(row.data(), cols, reinterpret_cast<BlockQ6_K*>(dst));
  }
  Weight w;
  w.dtype = type;
  w.rows = rows;
  w.cols = cols;
  w.data = storage.data();
  return w;
}

class QuantMatmul : public ::testing::TestWithParam<DType> {};

void check_quant_matmul(DType type);

// On every instruction set this CPU supports (simd_targets.h).
TEST_P(QuantMatmul, SimdMatchesReferenceAndIsBatchInvariant) {
  test::for_each_simd_target([&](int64_t) { check_quant_matmul(GetParam()); });
}

void check_quant_matmul(DType type) {
  std::mt19937 rng(9);
  ThreadPool pool(2);
  for (int64_t cols : {256, 512, 1280, 96, 288}) {  // 96, 288: an odd number of blocks of 32
    if (cols % dtype_block_elems(type)) continue;
    std::vector<uint8_t> storage;
    const int64_t rows = 45;
    Weight w = quantized_weight(type, rows, cols, storage, rng);
    std::normal_distribution<float> nd;
    for (int64_t T : {1, 3, 4, 7}) {
      std::vector<float> x(static_cast<size_t>(T * cols)), y(static_cast<size_t>(T * rows)), ref(y.size());
      for (auto& v : x) v = nd(rng);
      matmul(w, x.data(), T, y.data(), pool);
      reference::matmul_rows(w, 0, rows, x.data(), cols, T, ref.data(), rows);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "cols " << cols << " T " << T;
      for (int64_t t = 0; t < T; ++t) {  // each token alone: bit-identical
        std::vector<float> one(static_cast<size_t>(rows));
        matmul(w, &x[size_t(t * cols)], 1, one.data(), pool);
        for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(one[size_t(r)], y[size_t(t * rows + r)]);
      }
      // And close to the float product of the dequantized weights (activation quantization error only).
      std::vector<float> deq(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; r += 11) {
        dequantize_row(w, r, deq.data());
        double exact = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) exact += double(deq[size_t(c)]) * x[size_t(c)], mag += std::fabs(deq[size_t(c)] * x[size_t(c)]);
        EXPECT_NEAR(y[size_t(r)], exact, 0.02 * mag) << "row " << r;
      }
    }
  }
}

// A batch of products (mixed weight types, shared and separate inputs, an empty job, row counts
// off the 16-row bands) gives every job bitwise what matmul() gives it alone.
TEST(QuantMatmul, BatchOfProductsEqualsEachAlone) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  ThreadPool pool(2);
  std::vector<uint8_t> s8, s4, s5, s6;
  const Weight q8 = quantized_weight(DType::Q8_0, 45, 512, s8, rng);
  const Weight q5 = quantized_weight(DType::Q5_0, 21, 256, s5, rng);
  const Weight q4 = quantized_weight(DType::Q4_K, 37, 512, s4, rng);
  const Weight q6 = quantized_weight(DType::Q6_K, 70, 256, s6, rng);
  std::vector<uint8_t> sm;
  const Weight mx = quantized_weight(DType::MXFP4, 33, 512, sm, rng);
  std::vector<float> f32_values(size_t(19 * 512));
  for (auto& v : f32_values) v = nd(rng);
  Weight f32;
  f32.dtype = DType::F32;
  f32.rows = 19;
  f32.cols = 512;
  f32.data = reinterpret_cast<const uint8_t*>(f32_values.data());
  for (int64_t T : {1, 5}) {
    std::vector<float> xa(size_t(T * 512)), xb(size_t(T * 256));
    for (auto& v : xa) v = nd(rng);
    for (auto& v : xb) v = nd(rng);
    struct Case {
      const Weight* w;
      const float* x;
      int64_t n_tok;
    };
    const std::vector<Case> cases = {{&q8, xa.data(), T}, {&q4, xa.data(), T}, {&q6, xb.data(), T},
                                     {&f32, xa.data(), T}, {&q4, xa.data(), 0}, {&q8, xa.data(), 1},
                                     {&q5, xb.data(), T}, {&mx, xa.data(), T}};
    std::vector<std::vector<float>> got(cases.size()), want(cases.size());
    std::vector<MatmulJob> jobs;
    for (size_t i = 0; i < cases.size(); ++i) {
      got[i].assign(size_t(std::max<int64_t>(1, cases[i].n_tok) * cases[i].w->rows), -1.0f);
      want[i] = got[i];
      jobs.push_back({cases[i].w, cases[i].x, cases[i].n_tok, got[i].data()});
      if (cases[i].n_tok > 0) matmul(*cases[i].w, cases[i].x, cases[i].n_tok, want[i].data(), pool);
    }
    matmul_batch(jobs, pool);
    for (size_t i = 0; i < cases.size(); ++i)
      for (size_t k = 0; k < got[i].size(); ++k) ASSERT_EQ(got[i][k], want[i][k]) << "job " << i << " T " << T << " at " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, QuantMatmul, ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_K, DType::Q6_K, DType::MXFP4),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace whale
