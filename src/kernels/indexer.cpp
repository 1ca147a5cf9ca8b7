#include "kernels/indexer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/dtype.h"
#include "kernels/attention.h"

namespace whale {

void layernorm(const float* x, const float* w, const float* b, int64_t n, float eps, float* out) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = float(sum / double(n));
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i] - mean) * double(x[i] - mean);
  const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

void rope_half_split(float* x, const float* cos, const float* sin, int64_t n_pairs) {
  for (int64_t i = 0; i < n_pairs; ++i) {
    const float a = x[i], b = x[i + n_pairs];
    x[i] = a * cos[i] - b * sin[i];
    x[i + n_pairs] = b * cos[i] + a * sin[i];
  }
}

void hadamard_rotate(float* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float scale = float(1.0 / std::sqrt(double(n)));
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
}

void fp8_round_blocks(float* x, int64_t n, int64_t block) {
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t b1 = std::min(n, b0 + block);
    float amax = 1e-4f;
    for (int64_t i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float s = std::exp2(std::ceil(std::log2(amax / 448.0f)));
    for (int64_t i = b0; i < b1; ++i) x[i] = fp8_e4m3_to_f32(f32_to_fp8_e4m3(x[i] / s)) * s;
  }
}

void index_scores(const float* q, const float* w, int64_t n_heads, int64_t dim, const float* const* rows,
                  int64_t n_rows, float scale, float* scratch, float* out) {
  dot_rows(q, n_heads, dim, rows, n_rows, dim, scale, scratch, n_rows);  // [n_heads, n_rows]
  for (int64_t j = 0; j < n_rows; ++j) out[j] = 0.0f;
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* s = scratch + h * n_rows;
    for (int64_t j = 0; j < n_rows; ++j) out[j] += w[h] * std::max(s[j], 0.0f);
  }
}

void top_k_positions(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.resize(size_t(n));
  std::iota(out.begin(), out.end(), 0);
  if (k < n) {
    auto better = [&](int32_t a, int32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
    std::nth_element(out.begin(), out.begin() + k, out.end(), better);
    out.resize(size_t(k));
  }
  std::sort(out.begin(), out.end());
}

}  // namespace whale

namespace whale {

void rmsnorm_unweighted(float* x, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void compress_slots(const float* const* kv, const float* const* gate, int64_t n_slots, int64_t dim, float* out) {
  for (int64_t c = 0; c < dim; ++c) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s < n_slots; ++s) mx = std::max(mx, gate[s][c]);
    double sum = 0;
    for (int64_t s = 0; s < n_slots; ++s) sum += std::exp(double(gate[s][c] - mx));
    float acc = 0;
    for (int64_t s = 0; s < n_slots; ++s) acc += float(std::exp(double(gate[s][c] - mx)) / sum) * kv[s][c];
    out[c] = acc;
  }
}

float fp4_encode_block(const float* x, int64_t n, uint8_t* codes) {
  static constexpr float kLevels[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  float amax = 6.0f * std::ldexp(1.0f, -126);
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = std::exp2(std::ceil(std::log2(amax / 6.0f)));
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::min(std::fabs(x[i]) / s, 6.0f);
    int best = 0;
    for (int k = 1; k < 8; ++k) {
      const float d = std::fabs(a - kLevels[k]), db = std::fabs(a - kLevels[best]);
      if (d < db || (d == db && (k & 1) == 0)) best = k;
    }
    codes[i] = uint8_t(best | (std::signbit(x[i]) ? 8 : 0));
  }
  return s;
}

void fp4_round_blocks(float* x, int64_t n, int64_t block) {
  uint8_t stack[256];
  std::vector<uint8_t> heap;
  uint8_t* codes = stack;
  if (block > 256) {
    heap.resize(size_t(block));
    codes = heap.data();
  }
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t len = std::min(n, b0 + block) - b0;
    const float s = fp4_encode_block(x + b0, len, codes);
    for (int64_t i = 0; i < len; ++i) x[b0 + i] = fp4_e2m1_to_f32(codes[i]) * s;  // ±level · s, -0 kept
  }
}

}  // namespace whale
