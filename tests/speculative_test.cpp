// MTP speculative decoding: greedy output identical to plain greedy; speculative sampling
// keeps the main model's distribution.
#include <map>

#include "core/error.h"
#include "runtime/speculative.h"
#include "test_util.h"

namespace whale {
namespace {

std::vector<int32_t> plain_greedy(Model& model, const std::vector<int32_t>& prompt, int64_t n) {
  const int64_t V = model.config().vocab_size;
  auto cache = model.make_cache(int64_t(prompt.size()) + n + 1);
  SeqCache seq;
  seq.reserve(*cache, int64_t(prompt.size()) + n + 1);
  std::vector<float> logits(static_cast<size_t>(V));
  Batch b;
  b.add(&seq, prompt.data(), int64_t(prompt.size()));
  model.forward(b, *cache, logits.data());
  std::vector<int32_t> out;
  while (int64_t(out.size()) < n) {
    out.push_back(argmax(logits.data(), V));
    Batch s;
    s.add(&seq, &out.back(), 1);
    model.forward(s, *cache, logits.data());
  }
  return out;
}

class Speculative : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { model_ = Model::load(test::golden_dir(GetParam()), pool_); }
  ThreadPool pool_{2};
  std::unique_ptr<Model> model_;
};

TEST_P(Speculative, GreedyEqualsPlainGreedy) {
  for (const auto& c : test::load_golden(GetParam())) {
    const auto expected = plain_greedy(*model_, c.tokens, 24);
    for (int k : {1, 2, 3, 5}) {
      SpeculativeDecoder spec(*model_, k, 256);
      Sampler greedy({});
      EXPECT_EQ(spec.generate(c.tokens, 24, greedy, {}), expected) << "draft " << k;
      EXPECT_EQ(spec.stats().drafted, spec.stats().rounds * k);
    }
  }
}

// With the main model's own continuation as the proposals, every draft is accepted: this
// exercises the accept path (cache rollback, MTP catch-up from verified states) end to end.
TEST_P(Speculative, AcceptedDraftsKeepTheOutputExact) {
  const auto c = test::load_golden(GetParam())[0];
  const auto longer = plain_greedy(*model_, c.tokens, 40);  // proposals may run past the 30 asked for
  const std::vector<int32_t> expected(longer.begin(), longer.begin() + 30);
  for (int k : {1, 3, 4}) {
    SpeculativeDecoder spec(*model_, k, 256);
    spec.set_proposer([&](int64_t i) { return longer[size_t(i)]; });
    Sampler greedy({});
    EXPECT_EQ(spec.generate(c.tokens, 30, greedy, {}), expected) << "draft " << k;
    EXPECT_EQ(spec.stats().accepted, spec.stats().drafted);  // every proposal stood
    EXPECT_GT(spec.stats().tokens_per_round(), double(k));   // k drafts + 1 bonus token per round (the last cut short)
  }
  // Proposals that are right only sometimes: mixed accept/reject, still exact.
  SpeculativeDecoder spec(*model_, 3, 256);
  spec.set_proposer([&](int64_t i) { return i % 3 == 2 ? (longer[size_t(i)] + 1) % 300 : longer[size_t(i)]; });
  Sampler greedy({});
  EXPECT_EQ(spec.generate(c.tokens, 30, greedy, {}), expected);
  EXPECT_GT(spec.stats().accepted, 0);
  EXPECT_LT(spec.stats().accepted, spec.stats().drafted);
}

TEST_P(Speculative, SamplingRunsAndStopsAtEos) {
  const auto c = test::load_golden(GetParam())[0];
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 11;
  Sampler s(p);
  SpeculativeDecoder spec(*model_, 2, 256);
  auto out = spec.generate(c.tokens, 40, s, {});
  EXPECT_EQ(out.size(), 40u);
  EXPECT_GT(spec.stats().accepted, 0);  // near-uniform p and q overlap: some drafts stand
  SpeculativeDecoder stop(*model_, 2, 256);
  Sampler s2(p);
  auto out2 = stop.generate(c.tokens, 40, s2, {out[5]});
  EXPECT_LE(out2.size(), 40u);
  EXPECT_EQ(out2.back() == out[5] || out2.size() == 40u, true);
}

INSTANTIATE_TEST_SUITE_P(Models, Speculative, ::testing::Values("r2", "v3_mtp"),
                         [](const auto& info) { return std::string(info.param); });

TEST(SpeculativeSampling, KeepsTheTargetDistribution) {
  // Accept d ~ q with probability min(1, p/q), else draw from max(0, p - q): the emitted token
  // must be distributed as p, whatever q is.
  const std::vector<std::vector<float>> ps = {{0.1f, 0.2f, 0.3f, 0.4f, 0.0f}, {0.5f, 0.5f, 0, 0, 0}, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}};
  const std::vector<std::vector<float>> qs = {{0.4f, 0.3f, 0.2f, 0.05f, 0.05f}, {0.0f, 0.1f, 0.3f, 0.3f, 0.3f}, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}};
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 5;
  Sampler s(sp);
  for (size_t k = 0; k < ps.size(); ++k) {
    std::vector<int> count(5, 0);
    const int n = 200000;
    int accepted = 0;
    for (int i = 0; i < n; ++i) {
      const int32_t d = s.draw(qs[k]);
      bool acc;
      ++count[size_t(speculative_accept(ps[k], qs[k], d, s, &acc))];
      accepted += acc;
    }
    for (int t = 0; t < 5; ++t) EXPECT_NEAR(count[size_t(t)] / double(n), ps[k][size_t(t)], 0.005) << "case " << k << " token " << t;
    double overlap = 0;  // the acceptance rate of speculative sampling is Σ min(p, q)
    for (int t = 0; t < 5; ++t) overlap += std::min(ps[k][size_t(t)], qs[k][size_t(t)]);
    EXPECT_NEAR(accepted / double(n), overlap, 0.005) << "case " << k;
  }
}

TEST(Speculative, NeedsAnMtpModuleAndASaneDraftLength) {
  ThreadPool pool(1);
  auto plain = Model::load(test::golden_dir("v3"), pool);
  EXPECT_THROW(SpeculativeDecoder(*plain, 2, 64), Error);
  auto mtp = Model::load(test::golden_dir("v3_mtp"), pool);
  EXPECT_THROW(SpeculativeDecoder(*mtp, 0, 64), Error);
  EXPECT_THROW(SpeculativeDecoder(*mtp, 9, 64), Error);
}

}  // namespace
}  // namespace whale
