// Rotary position embedding of MLA's decoupled rope part, with YaRN as Hugging Face
// computes it for DeepSeek (modeling_rope_utils._compute_yarn_parameters):
//   base_freq_i = theta^(-2i/d)                    i = 0 .. d/2-1, d = qk_rope_head_dim
//   ramp_i      = clamp((i - low) / (high - low), 0, 1)   low/high from beta_fast/beta_slow
//   freq_i      = base_freq_i · ramp_i / factor + base_freq_i · (1 - ramp_i)
//   cos/sin     = cos/sin(pos · freq_i) · attention_factor
// and the attention softmax scale is qk_head_dim^-0.5 · mscale(factor, mscale_all_dim)².
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace whale {

struct Rope {
  std::vector<float> inv_freq;  // [qk_rope_head_dim / 2], float32 as in the reference
  float attention_factor = 1.0f;
  float softmax_scale = 1.0f;

  explicit Rope(const ModelConfig& c);  // MLA's: qk_rope_head_dim, rope_theta, yarn, and its softmax scale
  Rope(int64_t dim, double theta, const YarnConfig& yarn);  // any rotary width and base (softmax_scale 1)
  int64_t n_pairs() const { return int64_t(inv_freq.size()); }
  // cos/sin for one position, n_pairs values each.
  void angles(int64_t pos, float* cos_out, float* sin_out) const;
};

double yarn_mscale(double factor, double mscale);  // 0.1 · mscale · ln(factor) + 1, or 1 if factor <= 1

}  // namespace whale
