// GRPO (DeepSeekMath eq. 3) with the later fixes as switches (training-notes §4):
//   advantage  A_i = r_i - mean(r)  [÷ std(r) with adv_std_norm]   per group of G samples
//   per token  L = -min(ρ·A, clip(ρ, 1-ε_low, 1+ε_high)·A) + β·k3,  ρ = π_θ/π_old,
//              k3 = π_ref/π_θ - log(π_ref/π_θ) - 1
//   aggregation  token_mean (DAPO: Σ over all tokens / Σ|o|), seq_mean_token_mean (the
//              original: mean over tokens, then over sequences), token_sum_const (Dr. GRPO:
//              Σ over tokens / (sequences · constant))
// Groups whose rewards are all equal give no gradient and are skipped (filter_zero_var).
// Samples are drawn by the inference engine from the current weights; rewards are rule-based:
// 1 for a correct answer, plus `format_reward` when the reply ended by itself (not cut off)
// and, with thinking on, closed its think block before answering.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace whale::train {

enum class LossAgg { TokenMean, SeqMeanTokenMean, TokenSumConst };
LossAgg parse_loss_agg(const std::string& name);  // token_mean, seq_mean_token_mean, token_sum_const

struct GrpoLossOptions {
  bool adv_std_norm = false;
  LossAgg agg = LossAgg::TokenMean;
  float eps_low = 0.2f, eps_high = 0.28f;
  float kl_beta = 0.0f;
  float token_sum_const = 256;  // the constant of token_sum_const (the generation budget)
};

// Advantages of `rewards` (groups of G consecutive samples); keep[g] is false for a group
// whose rewards are all equal.
std::vector<float> group_advantages(const std::vector<float>& rewards, int64_t G, bool std_norm,
                                    std::vector<bool>& keep);

struct GrpoLossStats {
  double loss = 0, kl = 0, clip_frac = 0, tokens = 0;
};

// The loss over B rows of T positions; mask[b,t] = 1 for sampled tokens, adv[b] per row,
// old/ref log-probs of the same tokens (ref may be null when kl_beta is 0). Writes dL/dlogp.
GrpoLossStats grpo_loss(const std::vector<float>& logp, const std::vector<float>& old_logp,
                        const std::vector<float>* ref_logp, const std::vector<float>& mask,
                        const std::vector<float>& adv, int64_t B, int64_t T, const GrpoLossOptions& o,
                        std::vector<float>& dlogp);

struct GrpoOptions {
  std::string init, out;  // starting model directory (SFT), run directory
  std::string tasks = "all";
  int64_t steps = 100, prompts = 8, group = 8, max_tokens = 200, ppo_epochs = 1, save_every = 10;
  float temperature = 1.0f, lr = 2e-5f, min_lr = 2e-6f, clip = 1.0f, weight_decay = 0.0f;
  int64_t warmup = 5;
  float thinking = 0.75f;       // fraction of prompts asked with thinking on
  float format_reward = 0.1f;
  float bias_gamma = 1e-3f, balance_alpha = 1e-4f;
  GrpoLossOptions loss;
  uint64_t seed = 1;
  int threads = 0;
  bool quiet = false;
};

void run_grpo(const GrpoOptions& o);

}  // namespace whale::train
