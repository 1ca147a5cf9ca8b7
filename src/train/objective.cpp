#include "train/objective.h"

namespace whale::train {

LossValue cross_entropy_step(TrainModel& m, const TrainBatch& batch, const LossOptions& o, float grad_scale) {
  std::vector<float> logp;
  std::vector<std::vector<float>> mtp;
  m.forward(batch, logp, mtp);
  const int64_t B = batch.B, T = batch.T;
  LossValue v;
  std::vector<float> dlogp(logp.size(), 0.0f);
  double wsum = 0, acc = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 1; t < T; ++t) {
      const float w = batch.weight[size_t(b * T + t)];
      wsum += w;
      acc -= double(w) * logp[size_t(b * T + t)];
    }
  if (wsum > 0) {
    v.main = acc / wsum;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 1; t < T; ++t) dlogp[size_t(b * T + t)] = float(-double(batch.weight[size_t(b * T + t)]) / wsum * grad_scale);
  }
  v.main_tokens = wsum;
  std::vector<std::vector<float>> dmtp(mtp.size());
  const double per_module = mtp.empty() ? 0.0 : double(o.mtp_lambda) / double(mtp.size());
  for (size_t k = 0; k < mtp.size(); ++k) {
    dmtp[k].assign(logp.size(), 0.0f);
    double wk = 0, lk = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 2 + int64_t(k); t < T; ++t) {
        const float w = batch.weight[size_t(b * T + t)];
        wk += w;
        lk -= double(w) * mtp[k][size_t(b * T + t)];
      }
    if (wk == 0) continue;
    v.mtp += lk / wk / double(mtp.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 2 + int64_t(k); t < T; ++t)
        dmtp[k][size_t(b * T + t)] = float(-per_module * double(batch.weight[size_t(b * T + t)]) / wk * grad_scale);
  }
  v.balance = m.balance_loss();
  v.total = v.main + double(o.mtp_lambda) * v.mtp + double(o.balance_alpha) * v.balance;
  m.backward(dlogp, dmtp, o.balance_alpha * grad_scale);
  return v;
}

}  // namespace whale::train
