// AdamW with float32 state, decoupled weight decay on matrices only, global-norm gradient
// clipping and a linear-warmup cosine learning-rate schedule: the update PyTorch's
// torch.optim.AdamW and clip_grad_norm_ compute (checked against them in
// tests/train_reference_test.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "train/train_model.h"

namespace whale::train {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0.1f;  // applied to projection, embedding, router and mHC matrices
};

struct LrSchedule {
  float lr = 1e-3f, min_lr = 1e-4f;
  int64_t warmup = 0, total = 1;
  // lr · (step + 1) / warmup during warmup, then cosine from lr to min_lr at `total`.
  float at(int64_t step) const;
};

class AdamW {
 public:
  AdamW(const TrainModel& m, AdamWConfig c);
  // One update of every parameter from the model's gradients.
  void step(TrainModel& m, float lr, ThreadPool& pool);
  int64_t steps() const { return t_; }
  // The state, for checkpoints: first and second moments in the parameters' layout.
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  AdamWConfig c_;
  std::vector<float> m_, v_;
  std::vector<uint8_t> decay_;  // per parameter tensor
  int64_t t_ = 0;
};

// Scales the gradients so their global L2 norm is at most max_norm (max_norm <= 0: never);
// returns the norm before clipping.
double clip_grad_norm(std::vector<float>& grads, float max_norm);

}  // namespace whale::train
