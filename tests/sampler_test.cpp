#include "runtime/sampler.h"
#include "test_util.h"

namespace whale {
namespace {

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  Sampler s({});
  const float logits[5] = {1, 3, 3, -INFINITY, 2};
  EXPECT_EQ(s.sample(logits, 5), 1);
}

TEST(Sampler, FollowsTheDistributionAndFilters) {
  const float logits[4] = {0, std::log(2.0f), std::log(3.0f), std::log(4.0f)};  // p = .1 .2 .3 .4
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 3;
  Sampler s(p);
  std::vector<int> count(4, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) count[size_t(s.sample(logits, 4))]++;
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(count[size_t(k)] / double(n), 0.1 * (k + 1), 0.01) << k;

  p.top_p = 0.65f;  // keeps {3, 2}: 0.4 + 0.3 >= 0.65
  Sampler nucleus(p);
  for (int i = 0; i < 2000; ++i) EXPECT_GE(nucleus.sample(logits, 4), 2);
  p.top_p = 1.0f;
  p.top_k = 1;
  Sampler topk(p);
  EXPECT_EQ(topk.sample(logits, 4), 3);
  p.top_k = 0;
  p.min_p = 0.6f;  // keeps p >= 0.24: {2, 3}
  Sampler minp(p);
  for (int i = 0; i < 2000; ++i) EXPECT_GE(minp.sample(logits, 4), 2);
}

TEST(Sampler, SeedReproduces) {
  std::vector<float> logits(100);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(i % 7) * 0.3f;
  SamplingParams p;
  p.temperature = 0.8f;
  p.seed = 99;
  Sampler a(p), b(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(logits.data(), 100), b.sample(logits.data(), 100));
}

}  // namespace
}  // namespace whale

namespace whale {
namespace {

TEST(Sampler, PenaltiesAndLogitBias) {
  const float logits[4] = {2.0f, 1.9f, -1.0f, 0.5f};
  SamplingParams p;  // greedy
  p.logit_bias = {{3, 10.0f}};
  EXPECT_EQ(Sampler(p).sample(logits, 4), 3);

  p.logit_bias.clear();
  p.repetition_penalty = 1.2f;  // 2.0 / 1.2 = 1.667 < 1.9
  const int32_t prompt[1] = {0};
  EXPECT_EQ(Sampler(p).sample(logits, 4, prompt), 1);
  EXPECT_EQ(Sampler(p).sample(logits, 4), 0);  // nothing seen, nothing penalised

  p.repetition_penalty = 1.0f;
  p.frequency_penalty = 0.06f;  // token 0 generated twice: 2.0 - 0.12 < 1.9
  const int32_t out[2] = {0, 0};
  EXPECT_EQ(Sampler(p).sample(logits, 4, {}, out), 1);
  p.frequency_penalty = 0.0f;
  p.presence_penalty = 0.05f;  // 2.0 - 0.05 > 1.9
  EXPECT_EQ(Sampler(p).sample(logits, 4, {}, out), 0);
  p.presence_penalty = 0.2f;
  EXPECT_EQ(Sampler(p).sample(logits, 4, {}, out), 1);
}

}  // namespace
}  // namespace whale
