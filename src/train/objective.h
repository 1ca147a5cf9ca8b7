// Training objectives on top of TrainModel's log-probabilities.
//   cross-entropy: L = -Σ w·logp / Σ w  +  λ/D_mtp · Σ_k (-Σ w·logp_k / Σ w_k)  +  α · balance
// (DeepSeek-V3 §2.2/§2.4: MTP weight λ, sequence-wise balance weight α).
#pragma once
#include "train/train_model.h"

namespace whale::train {

struct LossOptions {
  float mtp_lambda = 0.3f;
  float balance_alpha = 1e-4f;
};

struct LossValue {
  double total = 0, main = 0, mtp = 0, balance = 0;
  double main_tokens = 0;  // Σ w over predicted tokens
};

// Forward + backward of the cross-entropy objective; gradients accumulate into m.grads()
// multiplied by grad_scale (1/accumulation steps).
LossValue cross_entropy_step(TrainModel& m, const TrainBatch& batch, const LossOptions& o, float grad_scale);

}  // namespace whale::train
