#include "kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace whale {

namespace {
float h2f(uint16_t h) { return f16_to_f32(h); }
int nearest(float v) { return int(std::lrintf(v)); }

// Q4_K: value at position p (0..255) of a block: 64-value chunks, the first 32 from the low
// nibbles of 32 bytes, the next 32 from the high nibbles of the same bytes.
int q4_k_nibble(const BlockQ4_K& b, int p) {
  const int chunk = p / 64, r = p % 64;
  const uint8_t byte = b.q[chunk * 32 + r % 32];
  return r < 32 ? byte & 0xf : byte >> 4;
}

// Q6_K: value at position p: 128-value halves; within one, four groups of 32 share 32 bytes of
// ql (groups 0/1: low nibbles of ql[0..32)/ql[32..64), groups 2/3: high nibbles) and the 32
// bytes of qh (2 bits per group). Scale index p / 16.
int q6_k_value(const BlockQ6_K& b, int p) {
  const int half = p / 128, r = p % 128, g = r / 32, l = r % 32;
  const uint8_t lo = b.ql[half * 64 + l + 32 * (g & 1)];
  const int low4 = g >= 2 ? lo >> 4 : lo & 0xf;
  const int high2 = (b.qh[half * 32 + l] >> (2 * g)) & 3;
  return (low4 | (high2 << 4)) - 32;
}

// llama.cpp's make_qkx2_quants: scale and min of `n` values for levels 0..nmax, found by a
// search over slightly perturbed scales with a weighted least-squares refit.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min) {
  float mn = x[0], mx = x[0], sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    std::fill(L, L + n, 0);
    *the_min = -mn;
    return 0.0f;
  }
  float iscale = float(nmax) / (mx - mn), scale = 1.0f / iscale, best = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(std::clamp(nearest(iscale * (x[i] - mn)), 0, nmax));
    const float d = scale * L[i] + mn - x[i];
    best += w[i] * d * d;
  }
  uint8_t aux[32];
  for (int is = 0; is <= 20; ++is) {
    iscale = (-1.0f + 0.1f * float(is) + float(nmax)) / (mx - mn);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest(iscale * (x[i] - mn)), 0, nmax);
      aux[i] = uint8_t(l);
      sum_l += w[i] * float(l);
      sum_l2 += w[i] * float(l * l);
      sum_xl += w[i] * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D <= 0) continue;
    float s = (sum_w * sum_xl - sum_x * sum_l) / D, m = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (m > 0) {
      m = 0;
      s = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float d = s * aux[i] + m - x[i];
      err += w[i] * d * d;
    }
    if (err < best) {
      std::copy(aux, aux + n, L);
      best = err;
      scale = s;
      mn = m;
    }
  }
  *the_min = -mn;
  return scale;
}

// llama.cpp's make_qx_quants (rmse_type 1): a symmetric scale for levels -nmax..nmax-1, the
// error weighted by x², searched over nearby scales.
float fit_symmetric(int n, int nmax, const float* x, int8_t* L) {
  float mx = 0, amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), mx = x[i];
  if (amax < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  auto fit = [&](float iscale, float* sumlx, float* suml2) {
    *sumlx = *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      *sumlx += w * x[i] * float(l);
      *suml2 += w * float(l * l);
    }
  };
  float best_iscale = -float(nmax) / mx, sumlx, suml2;
  fit(best_iscale, &sumlx, &suml2);
  float scale = suml2 > 0 ? sumlx / suml2 : 0, best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float iscale = -(float(nmax) + 0.1f * float(is)) / mx;
    fit(iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      best_iscale = iscale;
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(std::clamp(nearest(best_iscale * x[i]), -nmax, nmax - 1));
  return scale;
}
}  // namespace

void q4_k_scale_min(const uint8_t* q, int j, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = uint8_t((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
    *min = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void dequantize_q8_0(const BlockQ8_0* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = h2f(b[i].d);
    for (int k = 0; k < 32; ++k) out[i * 32 + k] = d * float(b[i].q[k]);
  }
}

namespace {
// Q4_0 and Q5_0 differ only in how a level is stored (quant.h's level) and its offset.
template <class Block>
void dequantize_x_0(const Block* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < 32; ++j) out[i * 32 + j] = d * float(level(b[i], j) - kLevelOffset<Block>);
  }
}
}  // namespace

void dequantize_q4_0(const BlockQ4_0* b, int64_t n, float* out) { dequantize_x_0(b, n, out); }
void dequantize_q5_0(const BlockQ5_0* b, int64_t n, float* out) { dequantize_x_0(b, n, out); }

void dequantize_q4_k(const BlockQ4_K* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n / 256; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int p = 0; p < 256; ++p) {
      uint8_t sc, m;
      q4_k_scale_min(b[i].scales, p / 32, &sc, &m);
      out[i * 256 + p] = d * float(sc) * float(q4_k_nibble(b[i], p)) - dmin * float(m);
    }
  }
}

void dequantize_q6_k(const BlockQ6_K* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n / 256; ++i) {
    const float d = h2f(b[i].d);
    for (int p = 0; p < 256; ++p) out[i * 256 + p] = d * float(b[i].scales[p / 16]) * float(q6_k_value(b[i], p));
  }
}

// Nibble j (0..31) of an MXFP4 block: values 0-15 low, 16-31 high, as Q4_0's levels.
static int mxfp4_code(const BlockMXFP4& b, int j) { return j < 16 ? b.qs[j] & 0xf : b.qs[j - 16] >> 4; }

void dequantize_mxfp4(const BlockMXFP4* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = mxfp4_scale(b[i].e);
    for (int j = 0; j < 32; ++j) out[i * 32 + j] = d * float(kMxfp4Levels[mxfp4_code(b[i], j)]);
  }
}

void quantize_mxfp4(const float* x, int64_t n, BlockMXFP4* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    const float* xb = x + i * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    // ggml's exponent, clamped to e8m0's range (ggml casts out-of-range values unchecked).
    const uint8_t e = !(amax > 0) ? 0 : !std::isfinite(amax) ? 254
                                      : uint8_t(std::clamp(int(std::floor(std::log2(amax))) - 2 + 127, 0, 254));
    const float d = mxfp4_scale(e);
    uint8_t L[32];
    for (int j = 0; j < 32; ++j) {  // the first level of least error, as best_index_mxfp4
      int best = 0;
      float err = std::fabs(float(kMxfp4Levels[0]) * d - xb[j]);
      for (int k = 1; k < 16; ++k) {
        const float e2 = std::fabs(float(kMxfp4Levels[k]) * d - xb[j]);
        if (e2 < err) best = k, err = e2;
      }
      L[j] = uint8_t(best);
    }
    out[i].e = e;
    for (int j = 0; j < 16; ++j) out[i].qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
  }
}

void quantize_q8_0(const float* x, int64_t n, BlockQ8_0* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    float amax = 0;
    for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x[i * 32 + k]));
    const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    out[i].d = f32_to_f16(d);
    for (int k = 0; k < 32; ++k) out[i].q[k] = int8_t(std::lround(x[i * 32 + k] * id));
  }
}

namespace {
// llama.cpp's quantize_row_q4_0_ref / q5_0_ref: d = (the value of largest magnitude) / −2^(bits−1),
// levels by truncation of x/d + (offset + ½) (not lrint: the bytes must match llama-quantize's).
// Returns the levels 0 .. 2^bits − 1 of the block's 32 values.
void fit_offset_block(const float* x, int bits, uint16_t* d_out, uint8_t* L) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
  const int offset = 1 << (bits - 1), top = (1 << bits) - 1;
  const float d = max / float(-offset), id = d ? 1.0f / d : 0.0f;
  *d_out = f32_to_f16(d);
  const float bias = float(offset) + 0.5f;
  for (int j = 0; j < 32; ++j) L[j] = uint8_t(std::clamp(int(x[j] * id + bias), 0, top));
}
}  // namespace

void quantize_q4_0(const float* x, int64_t n, BlockQ4_0* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    uint8_t L[32];
    fit_offset_block(x + i * 32, 4, &out[i].d, L);
    for (int j = 0; j < 16; ++j) out[i].qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
  }
}

void quantize_q5_0(const float* x, int64_t n, BlockQ5_0* out) {
  for (int64_t i = 0; i < n / 32; ++i) {
    uint8_t L[32];
    fit_offset_block(x + i * 32, 5, &out[i].d, L);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) out[i].qs[j] = uint8_t((L[j] & 0xf) | ((L[j + 16] & 0xf) << 4));
    for (int j = 0; j < 32; ++j) qh |= uint32_t(L[j] >> 4) << j;
    for (int k = 0; k < 4; ++k) out[i].qh[k] = uint8_t(qh >> (8 * k));
  }
}

void quantize_q4_k(const float* x, int64_t n, BlockQ4_K* out) {
  for (int64_t i = 0; i < n / 256; ++i) {
    const float* xb = x + i * 256;
    uint8_t L[256];
    float scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      float sum_x2 = 0, w[32];
      for (int l = 0; l < 32; ++l) sum_x2 += xb[32 * j + l] * xb[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xb[32 * j + l]);
      scales[j] = fit_scale_min(32, 15, xb + 32 * j, w, L + 32 * j, &mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    BlockQ4_K& y = out[i];
    std::memset(&y, 0, sizeof y);
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0, inv_min = max_min > 0 ? 63.0f / max_min : 0;
    for (int j = 0; j < 8; ++j) {
      const uint8_t ls = uint8_t(std::min(63, nearest(inv_scale * scales[j])));
      const uint8_t lm = uint8_t(std::min(63, nearest(inv_min * mins[j])));
      if (j < 4) {
        y.scales[j] = ls;
        y.scales[j + 4] = lm;
      } else {
        y.scales[j + 4] = uint8_t((ls & 0xf) | ((lm & 0xf) << 4));
        y.scales[j - 4] |= uint8_t((ls >> 4) << 6);
        y.scales[j] |= uint8_t((lm >> 4) << 6);
      }
    }
    y.d = f32_to_f16(max_scale / 63.0f);
    y.dmin = f32_to_f16(max_min / 63.0f);
    for (int j = 0; j < 8; ++j) {  // requantize against the stored (rounded) scales
      uint8_t sc, m;
      q4_k_scale_min(y.scales, j, &sc, &m);
      const float d = h2f(y.d) * sc, dm = h2f(y.dmin) * m;
      for (int l = 0; l < 32; ++l) L[32 * j + l] = d ? uint8_t(std::clamp(nearest((xb[32 * j + l] + dm) / d), 0, 15)) : 0;
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y.q[c * 32 + l] = uint8_t(L[c * 64 + l] | (L[c * 64 + 32 + l] << 4));
  }
}

void quantize_q6_k(const float* x, int64_t n, BlockQ6_K* out) {
  for (int64_t i = 0; i < n / 256; ++i) {
    const float* xb = x + i * 256;
    BlockQ6_K& y = out[i];
    std::memset(&y, 0, sizeof y);
    int8_t L[256];
    float scales[16], max_scale = 0, max_abs = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_symmetric(16, 32, xb + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs) max_abs = std::fabs(scales[j]), max_scale = scales[j];
    }
    if (max_abs < 1e-15f) continue;  // an all-zero block
    const float iscale = -128.0f / max_scale;
    y.d = f32_to_f16(1.0f / iscale);
    for (int j = 0; j < 16; ++j) y.scales[j] = int8_t(std::min(127, nearest(iscale * scales[j])));
    int q[256];
    for (int p = 0; p < 256; ++p) {
      const float d = h2f(y.d) * float(y.scales[p / 16]);
      q[p] = (d ? std::clamp(nearest(xb[p] / d), -32, 31) : 0) + 32;
    }
    for (int half = 0; half < 2; ++half)
      for (int l = 0; l < 32; ++l) {
        const int* qq = q + half * 128;
        y.ql[half * 64 + l] = uint8_t((qq[l] & 0xf) | ((qq[l + 64] & 0xf) << 4));
        y.ql[half * 64 + l + 32] = uint8_t((qq[l + 32] & 0xf) | ((qq[l + 96] & 0xf) << 4));
        y.qh[half * 32 + l] =
            uint8_t((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
      }
  }
}

namespace {
// `span` activations (a multiple of 32) with one scale: q = round(x · 127 / amax), d = amax / 127,
// in blocks of 32 with their sums Σ q.
inline void quantize_act_span(const float* __restrict x, int64_t span, int8_t* __restrict q, float* d, int32_t* sum) {
  float amax = 0;
  for (int64_t k = 0; k < span; ++k) amax = std::max(amax, std::fabs(x[k]));
  const float id = amax ? 127.0f / amax : 0.0f;
  for (int64_t b = 0; b < span / 32; ++b) {
    // Round half to even, as lrintf does in the default rounding mode, but in a form the
    // compiler vectorizes: adding and removing 1.5·2²³ leaves the float rounded to an integer
    // (|value| ≤ 127 here, far inside the range where that holds; the build keeps the multiply
    // unfused, see CMakeLists.txt).
    constexpr float kRound = 12582912.0f;
    int8_t out[32];
    int32_t s = 0;
    for (int k = 0; k < 32; ++k) s += (out[k] = int8_t(int((x[b * 32 + k] * id + kRound) - kRound)));
    std::memcpy(q + b * 32, out, 32);
    d[b] = amax / 127.0f;
    sum[b] = s;
  }
}
}  // namespace

int64_t act_scale_span(DType w) { return dtype_block_elems(w); }

void quantize_act(const float* x, int64_t n, int64_t span, ActQ8* out) {
  if (span % 32 != 0 || span > 256) fail("quantize_act: span ", span, " is not 32 to 256 in steps of 32");
  int8_t q[256];
  float d[8];
  int32_t sum[8];
  for (int64_t i = 0; i < n / span; ++i) {
    quantize_act_span(x + i * span, span, q, d, sum);
    for (int64_t b = 0; b < span / 32; ++b) {
      ActQ8& o = out[i * (span / 32) + b];
      std::memcpy(o.q, q + b * 32, 32);
      o.d = d[b];
      o.sum = sum[b];
    }
  }
}

void quantize_act_planar(const float* x, int64_t n, int64_t span, int8_t* q, float* d, int32_t* sum) {
  for (int64_t i = 0; i < n / span; ++i) quantize_act_span(x + i * span, span, q + i * span, d + i * span / 32, sum + i * span / 32);
}

float dot_q8_0(const BlockQ8_0* w, const ActQ8* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int s = 0;
    for (int k = 0; k < 32; ++k) s += int(w[i].q[k]) * int(x[i].q[k]);
    sum = std::fma(float(s), h2f(w[i].d) * x[i].d, sum);  // as the VNNI and AMX kernels (block_columns.h)
  }
  return sum;
}

namespace {
// Σ d·(q − offset)·x = d·x.d·(Σ q·x.q − offset·Σ x.q), the integer exact: as dot_q8_0.
template <class Block>
float dot_x_0(const Block* w, const ActQ8* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int s = 0;
    for (int j = 0; j < 32; ++j) s += level(w[i], j) * int(x[i].q[j]);
    sum = std::fma(float(s - kLevelOffset<Block> * x[i].sum), h2f(w[i].d) * x[i].d, sum);
  }
  return sum;
}
}  // namespace

float dot_q4_0(const BlockQ4_0* w, const ActQ8* x, int64_t n) { return dot_x_0(w, x, n); }
float dot_q5_0(const BlockQ5_0* w, const ActQ8* x, int64_t n) { return dot_x_0(w, x, n); }

float dot_mxfp4(const BlockMXFP4* w, const ActQ8* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int s = 0;
    for (int j = 0; j < 32; ++j) s += int(kMxfp4Levels[mxfp4_code(w[i], j)]) * int(x[i].q[j]);
    sum = std::fma(float(s), mxfp4_scale(w[i].e) * x[i].d, sum);  // as dot_q8_0
  }
  return sum;
}

float dot_q4_k(const BlockQ4_K* w, const ActQ8* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n / 256; ++i) {
    int32_t s = 0, mins = 0;  // exact: |s| ≤ 256·63·15·127 < 2³¹
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      q4_k_scale_min(w[i].scales, j, &sc, &m);
      const ActQ8& a = x[i * 8 + j];
      int part = 0;
      for (int l = 0; l < 32; ++l) part += q4_k_nibble(w[i], 32 * j + l) * int(a.q[l]);
      s += int(sc) * part;
      mins += int(m) * a.sum;
    }
    const float xd = x[i * 8].d;  // one activation scale per super-block (act_scale_span)
    sum = std::fma(float(s), h2f(w[i].d) * xd, sum);
    sum = std::fma(float(mins), -(h2f(w[i].dmin) * xd), sum);
  }
  return sum;
}

float dot_q6_k(const BlockQ6_K* w, const ActQ8* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n / 256; ++i) {
    int32_t s = 0;  // exact: |s| ≤ 256·32·128·127 < 2³¹
    for (int j = 0; j < 8; ++j) {  // activation blocks of 32 = two scale groups of 16
      const ActQ8& a = x[i * 8 + j];
      for (int h = 0; h < 2; ++h) {
        int part = 0;
        for (int l = 0; l < 16; ++l) part += q6_k_value(w[i], 32 * j + 16 * h + l) * int(a.q[16 * h + l]);
        s += int(w[i].scales[2 * j + h]) * part;
      }
    }
    sum = std::fma(float(s), h2f(w[i].d) * x[i * 8].d, sum);  // one activation scale per super-block
  }
  return sum;
}

}  // namespace whale
