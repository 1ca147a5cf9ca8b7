// DeepSeekMoE routing: which experts a token goes to and with what weights.
//   scores  = softmax(logits), sigmoid(logits) or sqrt(softplus(logits)) (float32)
//   choice  = scores + e_score_correction_bias   (the bias only chooses, never weights)
//   groups  = keep topk_group of n_group groups, ranked by their max (group_limited_greedy)
//             or by the sum of their top-2 choice scores (noaux_tc)
//   idx     = top-k of choice within the kept groups
//   weight  = scores[idx], / their sum if norm_topk_prob, · routed_scaling_factor
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace whale {

class Router {
 public:
  Router(const ModelConfig& c, const std::vector<float>* bias);
  // logits [n_experts] -> idx [top_k] (ascending expert order), weight [top_k]. `fixed`: the
  // experts to use instead of choosing (V4's hash layers), still weighted by their scores.
  void route(const float* logits, int32_t* idx, float* weight, const int32_t* fixed = nullptr) const;
  int64_t top_k() const { return top_k_; }

 private:
  ScoringFunc scoring_;
  TopkMethod method_;
  int64_t n_experts_, top_k_, n_group_, topk_group_;
  bool norm_topk_prob_;
  float routed_scaling_factor_;
  const std::vector<float>* bias_;
};

}  // namespace whale
