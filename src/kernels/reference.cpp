#include "kernels/reference.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

namespace whale::reference {

namespace {

// Plain scalar dot products, one per storage type. Each sums in index order in a float
// accumulator per 8 lanes, then the lanes pairwise: a fixed order the compiler vectorises.
template <class Load>
float dot_lanes(int64_t n, const float* x, Load load) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int l = 0; l < 8; ++l) acc[l] += load(c + l) * x[c + l];
  for (; c < n; ++c) acc[c % 8] += load(c) * x[c];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float dot_f32(const float* w, const float* x, int64_t n) {
  return dot_lanes(n, x, [w](int64_t i) { return w[i]; });
}
float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  return dot_lanes(n, x, [w](int64_t i) { return bf16_to_f32(w[i]); });
}
float dot_f16(const uint16_t* w, const float* x, int64_t n) {
  return dot_lanes(n, x, [w](int64_t i) { return f16_to_f32(w[i]); });
}
float dot_fp8(const Weight& w, int64_t r, const float* x) {
  const uint8_t* q = w.row(r);
  const float* s = w.scale + (r / w.block_rows) * w.scale_cols;
  float sum = 0;
  for (int64_t c0 = 0, b = 0; c0 < w.cols; c0 += w.block_cols, ++b) {
    const int64_t n = std::min(w.block_cols, w.cols - c0);
    sum += s[b] * dot_lanes(n, x + c0, [q, c0](int64_t i) { return fp8_e4m3_to_f32(q[c0 + i]); });
  }
  return sum;
}

float dot_fp4(const Weight& w, int64_t r, const float* x) {
  const uint8_t* q = w.row(r);
  const float* s = w.scale + (r / w.block_rows) * w.scale_cols;
  float sum = 0;
  for (int64_t c0 = 0, b = 0; c0 < w.cols; c0 += w.block_cols, ++b) {
    const int64_t n = std::min(w.block_cols, w.cols - c0);
    sum += s[b] * dot_lanes(n, x + c0, [q, c0](int64_t i) {
      const int64_t c = c0 + i;
      return fp4_e2m1_to_f32((q[c / 2] >> (4 * (c % 2))) & 15);
    });
  }
  return sum;
}

}  // namespace

float dot_row(const Weight& w, int64_t r, const float* x) {
  switch (w.dtype) {
    case DType::F32: return dot_f32(reinterpret_cast<const float*>(w.row(r)), x, w.cols);
    case DType::BF16: return dot_bf16(reinterpret_cast<const uint16_t*>(w.row(r)), x, w.cols);
    case DType::F16: return dot_f16(reinterpret_cast<const uint16_t*>(w.row(r)), x, w.cols);
    case DType::F8_E4M3: return dot_fp8(w, r, x);
    case DType::F4_E2M1: return dot_fp4(w, r, x);
    case DType::Q8_0: case DType::Q4_0: case DType::Q5_0: case DType::Q4_K: case DType::Q6_K: case DType::MXFP4: {
      std::vector<ActQ8> a(static_cast<size_t>(w.cols / 32));
      quantize_act(x, w.cols, act_scale_span(w.dtype), a.data());
      const uint8_t* p = w.row(r);
      switch (w.dtype) {
        case DType::Q8_0: return dot_q8_0(reinterpret_cast<const BlockQ8_0*>(p), a.data(), w.cols);
        case DType::Q4_0: return dot_q4_0(reinterpret_cast<const BlockQ4_0*>(p), a.data(), w.cols);
        case DType::Q5_0: return dot_q5_0(reinterpret_cast<const BlockQ5_0*>(p), a.data(), w.cols);
        case DType::MXFP4: return dot_mxfp4(reinterpret_cast<const BlockMXFP4*>(p), a.data(), w.cols);
        case DType::Q4_K: return dot_q4_k(reinterpret_cast<const BlockQ4_K*>(p), a.data(), w.cols);
        default: return dot_q6_k(reinterpret_cast<const BlockQ6_K*>(p), a.data(), w.cols);
      }
    }
    default: fail("reference matmul: unsupported weight type ", dtype_name(w.dtype));
  }
}

void matmul_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n_tok, float* y,
                 int64_t ldy) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t t = 0; t < n_tok; ++t) y[t * ldy + (r - r0)] = reference::dot_row(w, r, x + t * ldx);
}

void matvec_transposed(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y) {
  std::fill(y, y + w.cols, 0.0f);
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_row(w, r, row.data());
    const float a = x[r - r0];
    for (int64_t c = 0; c < w.cols; ++c) y[c] += a * row[c];
  }
}

}  // namespace whale::reference
