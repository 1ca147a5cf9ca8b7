#include "train/optimizer.h"

#include <cmath>

namespace whale::train {

float LrSchedule::at(int64_t step) const {
  if (step < warmup) return lr * float(step + 1) / float(warmup);
  const int64_t span = std::max<int64_t>(1, total - warmup);
  const double progress = std::min(1.0, double(step - warmup) / double(span));
  return float(min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress)));
}

AdamW::AdamW(const TrainModel& m, AdamWConfig c) : c_(c) {
  m_.assign(m.params().size(), 0.0f);
  v_.assign(m.params().size(), 0.0f);
  for (const ParamEntry& e : m.table())
    decay_.push_back(e.role == ParamRole::Linear || e.role == ParamRole::Embedding || e.role == ParamRole::Router ||
                     e.role == ParamRole::Hyper);
}

void AdamW::step(TrainModel& m, float lr, ThreadPool& pool) {
  ++t_;
  // torch: p *= 1 - lr·wd;  p -= lr / bc1 · m / (sqrt(v) / sqrt(bc2) + eps)
  const double bc1 = 1.0 - std::pow(double(c_.beta1), double(t_)), bc2 = 1.0 - std::pow(double(c_.beta2), double(t_));
  const float step_size = float(lr / bc1), sqrt_bc2 = float(std::sqrt(bc2));
  std::vector<float>& p = m.params();
  const std::vector<float>& g = m.grads();
  const auto& table = m.table();
  pool.parallel_for(int64_t(table.size()), [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      const ParamEntry& pe = table[size_t(e)];
      const float decay = decay_[size_t(e)] ? 1.0f - lr * c_.weight_decay : 1.0f;
      for (size_t i = pe.offset; i < pe.offset + size_t(pe.numel); ++i) {
        p[i] *= decay;
        m_[i] = c_.beta1 * m_[i] + (1.0f - c_.beta1) * g[i];
        v_[i] = c_.beta2 * v_[i] + (1.0f - c_.beta2) * g[i] * g[i];
        p[i] -= step_size * m_[i] / (std::sqrt(v_[i]) / sqrt_bc2 + c_.eps);
      }
    }
  });
}

double clip_grad_norm(std::vector<float>& grads, float max_norm) {
  double ss = 0;
  for (float g : grads) ss += double(g) * double(g);
  const double norm = std::sqrt(ss);
  if (max_norm > 0) {
    const double coef = double(max_norm) / (norm + 1e-6);  // torch's clip_grad_norm_
    if (coef < 1.0)
      for (float& g : grads) g = float(g * coef);
  }
  return norm;
}

}  // namespace whale::train
