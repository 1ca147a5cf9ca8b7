#include "model/router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace whale {

Router::Router(const ModelConfig& c, const std::vector<float>* bias)
    : scoring_(c.scoring_func), method_(c.topk_method), n_experts_(c.n_routed_experts),
      top_k_(c.num_experts_per_tok), n_group_(c.n_group), topk_group_(c.topk_group),
      norm_topk_prob_(c.norm_topk_prob), routed_scaling_factor_(float(c.routed_scaling_factor)),
      bias_(bias && !bias->empty() ? bias : nullptr) {}

namespace {
// Indices of the k largest values (ties: lower index first).
std::vector<int32_t> top_indices(const std::vector<float>& v, int64_t k) {
  std::vector<int32_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return v[size_t(a)] > v[size_t(b)] || (v[size_t(a)] == v[size_t(b)] && a < b); });
  order.resize(size_t(k));
  return order;
}
}  // namespace

void Router::route(const float* logits, int32_t* idx, float* weight, const int32_t* fixed) const {
  const size_t E = size_t(n_experts_);
  std::vector<float> scores(logits, logits + E);
  if (scoring_ == ScoringFunc::Softmax) {
    float mx = *std::max_element(scores.begin(), scores.end());
    double sum = 0;
    for (float& s : scores) sum += (s = std::exp(s - mx));
    for (float& s : scores) s = float(s / sum);
  } else if (scoring_ == ScoringFunc::Sigmoid) {
    for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
  } else {  // sqrt(softplus), softplus as torch computes it (linear above 20)
    for (float& s : scores) s = std::sqrt(s > 20.0f ? s : std::log1p(std::exp(s)));
  }
  if (fixed) {
    std::vector<int32_t> chosen(fixed, fixed + top_k_);
    std::sort(chosen.begin(), chosen.end());
    float sum = 0;
    for (int64_t k = 0; k < top_k_; ++k) sum += (weight[k] = scores[size_t(idx[k] = chosen[size_t(k)])]);
    for (int64_t k = 0; k < top_k_; ++k) {
      if (norm_topk_prob_) weight[k] /= sum + 1e-20f;
      weight[k] *= routed_scaling_factor_;
    }
    return;
  }

  std::vector<float> choice = scores;
  if (bias_)
    for (size_t e = 0; e < E; ++e) choice[e] += (*bias_)[e];

  if (method_ != TopkMethod::Greedy && n_group_ > 1) {
    const size_t per = E / size_t(n_group_);
    std::vector<float> group_score(static_cast<size_t>(n_group_));
    for (size_t g = 0; g < size_t(n_group_); ++g) {
      std::vector<float> members(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      if (method_ == TopkMethod::GroupLimitedGreedy) {
        group_score[g] = *std::max_element(members.begin(), members.end());
      } else {  // noaux_tc: sum of the group's two best
        std::partial_sort(members.begin(), members.begin() + 2, members.end(), std::greater<float>());
        group_score[g] = members[0] + members[1];
      }
    }
    std::vector<bool> keep(size_t(n_group_), false);
    for (int32_t g : top_indices(group_score, topk_group_)) keep[size_t(g)] = true;
    // HF masks dropped experts with 0 for group_limited_greedy (softmax scores are positive)
    // and with -inf for noaux_tc; both leave them unselectable.
    for (size_t e = 0; e < E; ++e)
      if (!keep[e / per]) choice[e] = -std::numeric_limits<float>::infinity();
  }

  std::vector<int32_t> chosen = top_indices(choice, top_k_);
  std::sort(chosen.begin(), chosen.end());
  float sum = 0;
  for (int64_t k = 0; k < top_k_; ++k) {
    idx[k] = chosen[size_t(k)];
    weight[k] = scores[size_t(chosen[size_t(k)])];
    sum += weight[k];
  }
  for (int64_t k = 0; k < top_k_; ++k) {
    if (norm_topk_prob_) weight[k] /= sum + 1e-20f;
    weight[k] *= routed_scaling_factor_;
  }
}

}  // namespace whale
