// The trainer against PyTorch (tests/golden/make_train_fixture.py): on the R2 golden model
// (mHC, MLA, grouped sigmoid MoE, MTP) the loss, every parameter gradient, and ten AdamW steps
// with clipping, the warmup-cosine schedule and the router-bias update.
#include <gtest/gtest.h>

#include <cmath>

#include "model/hf_config.h"
#include "test_util.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/train_model.h"

namespace whale {
namespace {

using namespace train;

struct Fixture {
  nlohmann::json j;
  TrainBatch batch;
  Fixture() {
    j = nlohmann::json::parse(test::read_file(test::golden_dir("train_r2.json")));
    auto tokens = j["tokens"].get<std::vector<std::vector<int32_t>>>();
    auto weight = j["weight"].get<std::vector<std::vector<float>>>();
    batch.B = int64_t(tokens.size());
    batch.T = int64_t(tokens[0].size());
    for (size_t b = 0; b < tokens.size(); ++b) {
      batch.tokens.insert(batch.tokens.end(), tokens[b].begin(), tokens[b].end());
      batch.weight.insert(batch.weight.end(), weight[b].begin(), weight[b].end());
    }
  }
  LossOptions loss() const { return {j["lambda"].get<float>(), j["alpha"].get<float>()}; }
};

// Compares a tensor with the reference's summary: sum, L2 norm and four entries.
void expect_matches(const std::string& what, const float* v, int64_t n, const nlohmann::json& ref, double tol) {
  double sum = 0, ss = 0;
  for (int64_t i = 0; i < n; ++i) sum += v[i], ss += double(v[i]) * v[i];
  const double norm = ref["norm"].get<double>();
  const double scale = std::max(norm, 1e-6);
  EXPECT_NEAR(std::sqrt(ss), norm, tol * scale) << what << " norm";
  EXPECT_NEAR(sum, ref["sum"].get<double>(), tol * scale * std::sqrt(double(n))) << what << " sum";
  auto at = ref["at"].get<std::vector<int64_t>>();
  auto values = ref["values"].get<std::vector<double>>();
  for (size_t i = 0; i < at.size(); ++i) EXPECT_NEAR(v[at[i]], values[i], tol * scale) << what << "[" << at[i] << "]";
}

TEST(TrainReference, LossAndEveryGradientMatchPyTorch) {
  Fixture f;
  ThreadPool pool(2);
  TrainModel m(load_hf_config(test::golden_dir("r2")), pool);
  m.load_weights(test::golden_dir("r2"));
  m.zero_grads();
  const LossValue v = cross_entropy_step(m, f.batch, f.loss(), 1.0f);
  const auto& first = f.j["first"];
  EXPECT_NEAR(v.main, first["main"].get<double>(), 1e-5 * first["main"].get<double>());
  EXPECT_NEAR(v.mtp, first["mtp"].get<double>(), 1e-5 * first["mtp"].get<double>());
  EXPECT_NEAR(v.balance, first["balance"].get<double>(), 1e-5 * first["balance"].get<double>());
  EXPECT_NEAR(v.total, first["loss"].get<double>(), 1e-5 * first["loss"].get<double>());
  int compared = 0;
  for (const ParamEntry& e : m.table()) {
    ASSERT_TRUE(f.j["grads"].contains(e.name)) << e.name;
    expect_matches("grad " + e.name, &m.grads()[e.offset], e.numel, f.j["grads"][e.name], 2e-4);
    ++compared;
  }
  EXPECT_EQ(compared, int(f.j["grads"].size()));
}

TEST(TrainReference, TenAdamWStepsMatchPyTorch) {
  Fixture f;
  ThreadPool pool(2);
  TrainModel m(load_hf_config(test::golden_dir("r2")), pool);
  m.load_weights(test::golden_dir("r2"));
  const auto betas = f.j["betas"].get<std::vector<float>>();
  AdamW opt(m, {betas[0], betas[1], f.j["eps"].get<float>(), f.j["weight_decay"].get<float>()});
  const LrSchedule sched{f.j["lr"].get<float>(), f.j["min_lr"].get<float>(), f.j["warmup"].get<int64_t>(),
                         f.j["steps"].get<int64_t>()};
  const auto losses = f.j["losses"].get<std::vector<double>>();
  const auto norms = f.j["grad_norms"].get<std::vector<double>>();
  for (int64_t step = 0; step < f.j["steps"].get<int64_t>(); ++step) {
    m.zero_grads();
    const LossValue v = cross_entropy_step(m, f.batch, f.loss(), 1.0f);
    const double norm = clip_grad_norm(m.grads(), f.j["clip"].get<float>());
    opt.step(m, sched.at(step), pool);
    m.update_router_bias(f.j["gamma"].get<float>());
    EXPECT_NEAR(v.total, losses[size_t(step)], 2e-4 * std::max(1.0, losses[size_t(step)])) << "step " << step;
    EXPECT_NEAR(norm, norms[size_t(step)], 2e-4 * norms[size_t(step)]) << "step " << step;
  }
  for (const ParamEntry& e : m.table())
    expect_matches("param " + e.name, &m.params()[e.offset], e.numel, f.j["params"][e.name], 2e-4);
  for (const auto& [name, b] : m.buffers())
    expect_matches("bias " + name, b.data(), int64_t(b.size()), f.j["params"][name], 1e-5);
}

TEST(TrainReference, ScheduleWarmsUpThenDecays) {
  const LrSchedule s{1.0f, 0.1f, 4, 14};
  EXPECT_FLOAT_EQ(s.at(0), 0.25f);
  EXPECT_FLOAT_EQ(s.at(3), 1.0f);
  EXPECT_NEAR(s.at(4), 1.0f, 1e-6);
  EXPECT_NEAR(s.at(9), 0.55f, 1e-6);  // half way down the cosine
  EXPECT_NEAR(s.at(14), 0.1f, 1e-6);
  EXPECT_NEAR(s.at(100), 0.1f, 1e-6);
}

TEST(TrainReference, ClippingScalesToTheLimit) {
  std::vector<float> g = {3, 4};
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0f), 5.0);
  EXPECT_NEAR(std::hypot(g[0], g[1]), 1.0, 1e-6);
  g = {0.3f, 0.4f};
  clip_grad_norm(g, 1.0f);
  EXPECT_FLOAT_EQ(g[0], 0.3f);  // under the limit: untouched
}

}  // namespace
}  // namespace whale
