#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace whale {

double yarn_mscale(double factor, double mscale) {
  if (factor <= 1) return 1.0;
  return 0.1 * mscale * std::log(factor) + 1.0;
}

Rope::Rope(const ModelConfig& c) : Rope(c.qk_rope_head_dim, c.rope_theta, c.yarn) {
  double scale = 1.0 / std::sqrt(double(c.qk_head_dim()));
  if (c.yarn.enabled && c.yarn.mscale_all_dim != 0) {
    const double m = yarn_mscale(c.yarn.factor, c.yarn.mscale_all_dim);
    scale *= m * m;
  }
  softmax_scale = float(scale);
}

Rope::Rope(int64_t dim, double base, const YarnConfig& yarn) {
  const int64_t half = dim / 2;
  inv_freq.resize(size_t(half));
  // theta^(2i/d) in float32, as torch evaluates `base ** (arange(0, d, 2).float() / d)`.
  auto pos_freq = [&](int64_t i) { return float(std::pow(base, double(float(2 * i) / float(dim)))); };

  if (!yarn.enabled) {
    for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = 1.0f / pos_freq(i);
  } else {
    const YarnConfig& y = yarn;
    const double L = double(y.original_max_position_embeddings);
    auto correction_dim = [&](double rotations) {
      return double(dim) * std::log(L / (rotations * 2 * M_PI)) / (2 * std::log(base));
    };
    double low = correction_dim(y.beta_fast), high = correction_dim(y.beta_slow);
    if (y.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;  // HF: prevent a singular ramp
    for (int64_t i = 0; i < half; ++i) {
      const float ramp = std::clamp(float((float(i) - float(low)) / float(high - low)), 0.0f, 1.0f);
      const float extrapolation = 1.0f / pos_freq(i);
      const float interpolation = 1.0f / (float(y.factor) * pos_freq(i));
      const float extrapolation_factor = 1.0f - ramp;
      inv_freq[size_t(i)] = interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
    }
    if (y.attention_factor >= 0) attention_factor = float(y.attention_factor);
    else if (y.mscale != 0 && y.mscale_all_dim != 0)
      attention_factor = float(yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim));
    else attention_factor = float(yarn_mscale(y.factor, 1.0));
  }
}

void Rope::angles(int64_t pos, float* cos_out, float* sin_out) const {
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float angle = float(pos) * inv_freq[i];  // float32 product, as the reference
    cos_out[i] = float(std::cos(double(angle))) * attention_factor;
    sin_out[i] = float(std::sin(double(angle))) * attention_factor;
  }
}

}  // namespace whale
