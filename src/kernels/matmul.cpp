#include "kernels/matmul.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "kernels/gemm_simd.h"
#include "kernels/quant.h"
#include "kernels/quant_simd.h"
#include "kernels/reference.h"

namespace whale {

size_t Weight::bytes() const {
  size_t n = size_t(rows) * row_bytes();
  if (scale) n += sizeof(float) * size_t((rows + block_rows - 1) / block_rows) * size_t(scale_cols);
  return n;
}

void dequantize_row(const Weight& w, int64_t r, float* out) {
  const uint8_t* p = w.row(r);
  switch (w.dtype) {
    case DType::F32: std::memcpy(out, p, size_t(w.cols) * 4); return;
    case DType::BF16:
      for (int64_t c = 0; c < w.cols; ++c) out[c] = bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[c]);
      return;
    case DType::F16:
      for (int64_t c = 0; c < w.cols; ++c) out[c] = f16_to_f32(reinterpret_cast<const uint16_t*>(p)[c]);
      return;
    case DType::F8_E4M3: {
      const float* s = w.scale + (r / w.block_rows) * w.scale_cols;
      for (int64_t c = 0; c < w.cols; ++c) out[c] = fp8_e4m3_to_f32(p[c]) * s[c / w.block_cols];
      return;
    }
    case DType::F4_E2M1: {
      const float* s = w.scale + (r / w.block_rows) * w.scale_cols;
      for (int64_t c = 0; c < w.cols; ++c) out[c] = fp4_e2m1_to_f32((p[c / 2] >> (4 * (c % 2))) & 15) * s[c / w.block_cols];
      return;
    }
    case DType::Q8_0: dequantize_q8_0(reinterpret_cast<const BlockQ8_0*>(p), w.cols, out); return;
    case DType::Q4_0: dequantize_q4_0(reinterpret_cast<const BlockQ4_0*>(p), w.cols, out); return;
    case DType::Q5_0: dequantize_q5_0(reinterpret_cast<const BlockQ5_0*>(p), w.cols, out); return;
    case DType::Q4_K: dequantize_q4_k(reinterpret_cast<const BlockQ4_K*>(p), w.cols, out); return;
    case DType::Q6_K: dequantize_q6_k(reinterpret_cast<const BlockQ6_K*>(p), w.cols, out); return;
    case DType::MXFP4: dequantize_mxfp4(reinterpret_cast<const BlockMXFP4*>(p), w.cols, out); return;
    default: fail("dequantize: unsupported weight type ", dtype_name(w.dtype));
  }
}

namespace {
// Rows per unit of parallel work in matmul_rows and matmul_batch.
constexpr int64_t kRowsPerTask = 16;

GemmArgs gemm_args(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n_tok, float* y,
                   int64_t ldy) {
  switch (w.dtype) {
    case DType::F32: case DType::BF16: case DType::F16: case DType::F8_E4M3: case DType::F4_E2M1: break;
    default: fail("matmul: unsupported weight type ", dtype_name(w.dtype));
  }
  GemmArgs a{w.dtype, w.data, w.row_bytes(), w.cols, r0, r1, x, ldx, n_tok, y, ldy};
  if (w.dtype == DType::F8_E4M3 || w.dtype == DType::F4_E2M1) {
    a.scale = w.scale;
    a.block_rows = w.block_rows;
    a.block_cols = w.block_cols;
    a.scale_cols = w.scale_cols;
    a.scale_factor = w.dtype == DType::F8_E4M3 ? 256.0f : 16384.0f;  // the f16 exponent shifts
  }
  return a;
}
}  // namespace

// Activations of block-quantized products: int8 blocks of 32 per token, one scale per `span`
// values (quant.h's act_scale_span of the weight type).
struct QuantizedActivations {
  std::vector<int8_t> storage;  // q, 64-byte aligned: the kernels' loads then split no cache lines
  int8_t* q;
  std::vector<float> d;
  std::vector<int32_t> sum;
  int64_t span;
  ActArgs args;
  // Tokens are quantized in parallel (a prompt's worth on one thread was 5% of prefill).
  QuantizedActivations(const float* x, int64_t ldx, int64_t n_tok, int64_t cols, int64_t span, ThreadPool* pool)
      : span(span) {
    const int64_t blocks = cols / 32;
    storage.resize(size_t(n_tok * cols) + 64);
    q = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
    d.resize(size_t(n_tok * blocks));
    sum.resize(size_t(n_tok * blocks));
    auto tokens = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        quantize_act_planar_simd(x + t * ldx, cols, span, q + t * cols, d.data() + t * blocks, sum.data() + t * blocks);
    };
    if (pool && n_tok > 1) pool->parallel_for(n_tok, tokens, 4);
    else tokens(0, n_tok);
    args = {q, d.data(), sum.data(), cols, blocks};
  }
};

float dot_row(const Weight& w, int64_t r, const float* x) {
  float y;
  if (is_block_quantized(w.dtype)) {
    QuantizedActivations a(x, w.cols, 1, w.cols, act_scale_span(w.dtype), nullptr);
    quant_gemm_rows_simd({w.dtype, w.data, w.row_bytes(), w.cols, r, r + 1, a.args, 1, &y, 1});
    return y;
  }
  gemm_rows_simd(gemm_args(w, r, r + 1, x, w.cols, 1, &y, 1));
  return y;
}

void matmul_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t ldx, int64_t n_tok, float* y,
                 int64_t ldy, ThreadPool& pool) {
  if (r1 <= r0 || n_tok <= 0) return;
  // Hands out bands of kRowsPerTask rows: each gets a copy of `base` narrowed to its rows.
  auto in_bands = [&](const auto& base, auto kernel) {
    pool.parallel_for((r1 - r0 + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t b, int64_t e) {
      auto a = base;
      a.r0 = r0 + b * kRowsPerTask;
      a.r1 = std::min(r1, r0 + e * kRowsPerTask);
      a.y = y + b * kRowsPerTask;
      kernel(a);
    });
  };
  if (is_block_quantized(w.dtype)) {
    const QuantizedActivations act(x, ldx, n_tok, w.cols, act_scale_span(w.dtype), &pool);
    in_bands(QuantGemmArgs{w.dtype, w.data, w.row_bytes(), w.cols, r0, r1, act.args, n_tok, y, ldy},
             quant_gemm_rows_simd);
    return;
  }
  in_bands(gemm_args(w, r0, r1, x, ldx, n_tok, y, ldy), gemm_rows_simd);
}

void matmul_batch(const std::vector<MatmulJob>& jobs, ThreadPool& pool) {
  // Activations quantized once per distinct input and scale span (gate and up projections share
  // theirs).
  std::vector<std::unique_ptr<QuantizedActivations>> acts;
  std::vector<const QuantizedActivations*> act_of(jobs.size(), nullptr);
  std::vector<int64_t> first_band(jobs.size() + 1, 0);  // bands of job j: [first_band[j], first_band[j + 1])
  for (size_t j = 0; j < jobs.size(); ++j) {
    const MatmulJob& job = jobs[j];
    first_band[j + 1] = first_band[j] + (job.n_tok > 0 ? (job.w->rows + kRowsPerTask - 1) / kRowsPerTask : 0);
    if (!is_block_quantized(job.w->dtype)) {
      gemm_args(*job.w, 0, 0, job.x, job.w->cols, job.n_tok, job.y, job.w->rows);  // fails on unsupported types
      continue;
    }
    if (job.n_tok <= 0) continue;
    const int64_t span = act_scale_span(job.w->dtype);
    for (size_t k = 0; k < j && !act_of[j]; ++k)
      if (act_of[k] && jobs[k].x == job.x && jobs[k].n_tok == job.n_tok && jobs[k].w->cols == job.w->cols && act_of[k]->span == span)
        act_of[j] = act_of[k];
    if (!act_of[j]) {
      acts.push_back(std::make_unique<QuantizedActivations>(job.x, job.w->cols, job.n_tok, job.w->cols, span, &pool));
      act_of[j] = acts.back().get();
    }
  }
  // Bands [b, e) of the concatenation, split at job boundaries into one kernel call per job.
  pool.parallel_for(first_band.back(), [&](int64_t b, int64_t e) {
    size_t j = size_t(std::upper_bound(first_band.begin(), first_band.end(), b) - first_band.begin()) - 1;
    for (; b < e; ++j) {
      const int64_t end = std::min(e, first_band[j + 1]);
      if (end <= b) continue;
      const MatmulJob& job = jobs[j];
      const Weight& w = *job.w;
      const int64_t r0 = (b - first_band[j]) * kRowsPerTask, r1 = std::min(w.rows, (end - first_band[j]) * kRowsPerTask);
      if (act_of[j])
        quant_gemm_rows_simd({w.dtype, w.data, w.row_bytes(), w.cols, r0, r1, act_of[j]->args, job.n_tok, job.y + r0, w.rows});
      else
        gemm_rows_simd(gemm_args(w, r0, r1, job.x, w.cols, job.n_tok, job.y + r0, w.rows));
      b = end;
    }
  });
}

void matvec_transposed(const Weight& w, int64_t r0, int64_t r1, const float* x, float* y) {
  reference::matvec_transposed(w, r0, r1, x, y);
}

}  // namespace whale
