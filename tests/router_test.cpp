// Expert routing variants, checked by hand-computed cases.
#include "model/router.h"
#include "test_util.h"

namespace whale {
namespace {

ModelConfig moe_config(int64_t experts, int64_t top_k, int64_t groups, int64_t topk_group, TopkMethod m, ScoringFunc s,
                       bool norm, double scale) {
  ModelConfig c;
  c.n_routed_experts = experts;
  c.num_experts_per_tok = top_k;
  c.n_group = groups;
  c.topk_group = topk_group;
  c.topk_method = m;
  c.scoring_func = s;
  c.norm_topk_prob = norm;
  c.routed_scaling_factor = scale;
  return c;
}

TEST(Router, GreedySoftmaxKeepsRawProbabilities) {
  Router r(moe_config(4, 2, 1, 1, TopkMethod::Greedy, ScoringFunc::Softmax, false, 1.0), nullptr);
  const float logits[4] = {0, 2, 1, 3};
  int32_t idx[2];
  float w[2];
  r.route(logits, idx, w);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 3);
  const double z = 1 + std::exp(2.0) + std::exp(1.0) + std::exp(3.0);
  EXPECT_NEAR(w[0], std::exp(2.0) / z, 1e-6);
  EXPECT_NEAR(w[1], std::exp(3.0) / z, 1e-6);
}

TEST(Router, GroupLimitedGreedyRanksGroupsByTheirMax) {
  // Groups {0,1} {2,3} {4,5}; keep 1 group. Group 1 has the single best expert (3); group 0
  // has the two next best, which a top-2 over all experts would have picked.
  Router r(moe_config(6, 2, 3, 1, TopkMethod::GroupLimitedGreedy, ScoringFunc::Softmax, false, 16.0), nullptr);
  const float logits[6] = {2.0f, 1.9f, -5.0f, 3.0f, 0.0f, 0.0f};
  int32_t idx[2];
  float w[2];
  r.route(logits, idx, w);
  EXPECT_EQ(idx[0], 2);
  EXPECT_EQ(idx[1], 3);
  double z = 0;
  for (float l : logits) z += std::exp(double(l));
  EXPECT_NEAR(w[1], 16.0 * std::exp(3.0) / z, 1e-5);
}

TEST(Router, NoauxTcBiasChoosesButNeverWeights) {
  // Sigmoid scores; the bias makes experts 0 and 1 win although their scores are lowest.
  std::vector<float> bias = {5, 5, 0, 0};
  Router r(moe_config(4, 2, 2, 1, TopkMethod::NoauxTc, ScoringFunc::Sigmoid, true, 2.5), &bias);
  const float logits[4] = {-1.0f, 0.5f, 2.0f, 3.0f};
  int32_t idx[2];
  float w[2];
  r.route(logits, idx, w);
  EXPECT_EQ(idx[0], 0);
  EXPECT_EQ(idx[1], 1);
  const double s0 = 1 / (1 + std::exp(1.0)), s1 = 1 / (1 + std::exp(-0.5));
  EXPECT_NEAR(w[0], 2.5 * s0 / (s0 + s1), 1e-6);
  EXPECT_NEAR(w[1], 2.5 * s1 / (s0 + s1), 1e-6);
}

TEST(Router, NoauxTcRanksGroupsBySumOfTopTwo) {
  // Group A {0,1,2}: 0.9 + 0.1; group B {3,4,5}: 0.8 + 0.7. Max would pick A, top-2 sum picks B.
  Router r(moe_config(6, 1, 2, 1, TopkMethod::NoauxTc, ScoringFunc::Sigmoid, true, 1.0), nullptr);
  auto logit = [](double p) { return float(std::log(p / (1 - p))); };
  const float logits[6] = {logit(0.9), logit(0.1), logit(0.05), logit(0.8), logit(0.7), logit(0.05)};
  int32_t idx[1];
  float w[1];
  r.route(logits, idx, w);
  EXPECT_EQ(idx[0], 3);
  EXPECT_NEAR(w[0], 1.0, 1e-6);  // normalised over the single pick
}

}  // namespace
}  // namespace whale
