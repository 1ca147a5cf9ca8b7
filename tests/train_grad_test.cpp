// The training model: its forward pass against the Hugging Face reference logits of the
// golden checkpoints and against the inference model, and its backward pass against finite
// differences, tensor by tensor (directional derivatives, so float32 rounding stays small
// next to the signal).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "model/hf_config.h"
#include "model/model.h"
#include "test_util.h"
#include "train/train_model.h"

namespace whale {
namespace {

using train::TrainBatch;
using train::TrainModel;

std::vector<float> log_softmax_at(const std::vector<float>& logits, int32_t target) {
  double mx = -1e30, sum = 0;
  for (float v : logits) mx = std::max(mx, double(v));
  for (float v : logits) sum += std::exp(double(v) - mx);
  return {float(double(logits[size_t(target)]) - mx - std::log(sum))};
}

TrainBatch one_sequence(const std::vector<int32_t>& tokens) {
  TrainBatch b;
  b.B = 1;
  b.T = int64_t(tokens.size());
  b.tokens = tokens;
  b.weight.assign(tokens.size(), 1.0f);
  b.weight[0] = 0;
  return b;
}

// Log-probabilities of the golden cases' next tokens from the training model equal those of
// the reference logits (main head and MTP module).
class TrainForwardGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainForwardGolden, MatchesReferenceLogProbs) {
  ThreadPool pool(2);
  TrainModel m(load_hf_config(test::golden_dir(GetParam())), pool);
  m.load_weights(test::golden_dir(GetParam()));
  auto golden = nlohmann::json::parse(test::read_file(test::golden_dir(GetParam()) + "/expected.json"));
  for (const auto& c : golden["cases"]) {
    auto tokens = c["tokens"].get<std::vector<int32_t>>();
    auto logits = c["logits"].get<std::vector<std::vector<float>>>();
    std::vector<float> logp;
    std::vector<std::vector<float>> mtp;
    m.forward(one_sequence(tokens), logp, mtp);
    for (size_t t = 1; t < tokens.size(); ++t)
      EXPECT_NEAR(logp[t], log_softmax_at(logits[t - 1], tokens[t])[0], 2e-4) << GetParam() << " position " << t;
    if (c.contains("mtp_logits")) {
      auto ml = c["mtp_logits"].get<std::vector<std::vector<float>>>();
      ASSERT_EQ(mtp.size(), 1u);
      for (size_t t = 2; t < tokens.size(); ++t)
        EXPECT_NEAR(mtp[0][t], log_softmax_at(ml[t - 2], tokens[t])[0], 2e-4) << GetParam() << " MTP position " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, TrainForwardGolden,
                         ::testing::Values("v2_lite", "v2", "v3", "dense_tied", "r2", "r2_hc1", "v3_mtp"));

// A tiny R2-shaped config: mHC, MLA with q compression, a dense then an MoE layer with
// shared experts and grouped sigmoid routing, one MTP module.
std::string tiny_config(bool hc, bool q_lora, const char* scoring, int mtp) {
  nlohmann::json c = {
      {"architectures", {"DeepseekV3ForCausalLM"}}, {"model_type", "deepseek_v3"}, {"vocab_size", 40},
      {"hidden_size", 16}, {"intermediate_size", 24}, {"moe_intermediate_size", 8}, {"num_hidden_layers", 2},
      {"num_attention_heads", 2}, {"num_key_value_heads", 2}, {"q_lora_rank", q_lora ? 12 : 0}, {"kv_lora_rank", 8},
      {"qk_nope_head_dim", 4}, {"qk_rope_head_dim", 4}, {"v_head_dim", 6}, {"n_routed_experts", 4},
      {"n_shared_experts", 1}, {"num_experts_per_tok", 2}, {"n_group", 2}, {"topk_group", 1},
      {"topk_method", std::string(scoring) == "sigmoid" ? "noaux_tc" : "greedy"}, {"scoring_func", scoring},
      {"norm_topk_prob", true}, {"routed_scaling_factor", 2.0}, {"first_k_dense_replace", 1}, {"moe_layer_freq", 1},
      {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0}, {"max_position_embeddings", 64},
      {"tie_word_embeddings", false}, {"num_nextn_predict_layers", mtp}};
  if (hc)
    c.update({{"architectures", {"DeepseekR2ForCausalLM"}}, {"model_type", "deepseek_r2"}, {"hc_mult", 3},
              {"hc_sinkhorn_iters", 6}, {"hc_eps", 1e-6}});
  return c.dump();
}

struct GradCase {
  const char* name;
  bool hc, q_lora;
  const char* scoring;
  int mtp;
};

class TrainGradCheck : public ::testing::TestWithParam<GradCase> {};

// L = Σ a_t·logp_t + Σ b_t·mtp_logp_t + β·balance, with fixed random a, b: every parameter
// tensor's gradient g against the central difference of L along a random direction v.
TEST_P(TrainGradCheck, EveryTensorMatchesFiniteDifferences) {
  const GradCase& gc = GetParam();
  ThreadPool pool(2);
  TrainModel m(parse_hf_config(tiny_config(gc.hc, gc.q_lora, gc.scoring, gc.mtp), "tiny"), pool);
  m.init_random(7);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0, 1);
  // Larger weights than the init, so every path carries a gradient well above rounding.
  for (const auto& e : m.table())
    if (e.role == ParamRole::Linear || e.role == ParamRole::Router || e.role == ParamRole::Hyper ||
        e.role == ParamRole::Embedding)
      for (int64_t i = 0; i < e.numel; ++i) m.params()[e.offset + size_t(i)] = normal(rng) * 0.4f;
    else
      for (int64_t i = 0; i < e.numel; ++i) m.params()[e.offset + size_t(i)] += 0.2f * normal(rng);

  TrainBatch b;
  b.B = 2;
  b.T = 7;
  for (int64_t i = 0; i < b.B * b.T; ++i) {
    b.tokens.push_back(int32_t(rng() % 40));
    b.weight.push_back(i % b.T == 0 ? 0.0f : 1.0f);
  }
  b.weight[3] = 0;  // a masked target
  std::vector<float> a(size_t(b.B * b.T)), bb(size_t(b.B * b.T));
  for (auto& v : a) v = 0.5f + std::abs(normal(rng));
  for (auto& v : bb) v = 0.5f + std::abs(normal(rng));
  const float beta = 0.7f;

  auto loss = [&] {
    std::vector<float> logp;
    std::vector<std::vector<float>> mtp;
    m.forward(b, logp, mtp);
    double L = 0;
    for (size_t i = 0; i < logp.size(); ++i) L += double(a[i]) * logp[i];
    for (const auto& v : mtp)
      for (size_t i = 0; i < v.size(); ++i) L += double(bb[i]) * v[i];
    return L + beta * m.balance_loss();
  };
  loss();
  m.zero_grads();
  std::vector<std::vector<float>> dmtp(size_t(gc.mtp), bb);
  m.backward(a, dmtp, beta);
  const std::vector<float> g = m.grads();

  int checked = 0;
  for (const auto& e : m.table()) {
    std::vector<float> v(size_t(e.numel));
    for (auto& x : v) x = normal(rng);
    double analytic = 0, vnorm = 0;
    for (int64_t i = 0; i < e.numel; ++i) {
      analytic += double(g[e.offset + size_t(i)]) * v[size_t(i)];
      vnorm += double(v[size_t(i)]) * v[size_t(i)];
    }
    const float h = float(1e-2 / std::sqrt(vnorm));
    std::vector<float> saved(m.params().begin() + long(e.offset), m.params().begin() + long(e.offset) + e.numel);
    for (int64_t i = 0; i < e.numel; ++i) m.params()[e.offset + size_t(i)] = saved[size_t(i)] + h * v[size_t(i)];
    const double up = loss();
    for (int64_t i = 0; i < e.numel; ++i) m.params()[e.offset + size_t(i)] = saved[size_t(i)] - h * v[size_t(i)];
    const double down = loss();
    std::copy(saved.begin(), saved.end(), m.params().begin() + long(e.offset));
    const double numeric = (up - down) / (2.0 * h);
    EXPECT_NEAR(analytic, numeric, 2e-2 * std::max(1.0, std::abs(numeric)))
        << gc.name << ": " << e.name << " analytic " << analytic << " numeric " << numeric;
    ++checked;
  }
  EXPECT_EQ(checked, int(m.table().size()));
}

INSTANTIATE_TEST_SUITE_P(Configs, TrainGradCheck,
                         ::testing::Values(GradCase{"r2", true, true, "sigmoid", 1}, GradCase{"plain", false, false, "softmax", 0},
                                           GradCase{"mtp2", false, true, "sigmoid", 2}),
                         [](const auto& info) { return std::string(info.param.name); });

// A trained model saved by save_model is an ordinary model directory: the inference model
// loads it and computes the same next-token log-probabilities.
TEST(TrainModel, SavedCheckpointServesTheSameModel) {
  ThreadPool pool(2);
  const std::string config = tiny_config(true, true, "sigmoid", 1);
  TrainModel m(parse_hf_config(config, "tiny"), pool);
  m.init_random(3);
  for (auto& [name, bias] : m.buffers())
    for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.01f * float(i);
  test::TempDir dir;
  train::save_model(m, config, dir / "ckpt");
  auto model = Model::load(dir / "ckpt", pool);
  const std::vector<int32_t> tokens = {3, 9, 27, 1, 0, 39, 12, 5};
  std::vector<float> logp;
  std::vector<std::vector<float>> mtp;
  m.forward(one_sequence(tokens), logp, mtp);
  const int64_t S = int64_t(tokens.size()), V = 40;
  auto cache = model->make_cache(S, 4);
  SeqCache seq;
  ASSERT_TRUE(seq.reserve(*cache, S));
  Batch batch;
  batch.add(&seq, tokens.data(), S, false);
  std::vector<float> logits(size_t(S * V));
  model->forward(batch, *cache, logits.data());
  for (int64_t t = 1; t < S; ++t) {
    std::vector<float> row(logits.begin() + (t - 1) * V, logits.begin() + t * V);
    EXPECT_NEAR(logp[size_t(t)], log_softmax_at(row, tokens[size_t(t)])[0], 1e-4) << "position " << t;
  }
  // Saving again replaces the directory as a whole.
  m.params()[0] += 1.0f;
  train::save_model(m, config, dir / "ckpt", /*bf16=*/true);
  EXPECT_FALSE(test::fs::exists(dir / "ckpt.tmp"));
  EXPECT_FALSE(test::fs::exists(dir / "ckpt.old"));
  EXPECT_NO_THROW(Model::load(dir / "ckpt", pool));
}

TEST(TrainModel, RejectsBadBatches) {
  ThreadPool pool(1);
  TrainModel m(parse_hf_config(tiny_config(false, false, "softmax", 0), "tiny"), pool);
  m.init_random(1);
  std::vector<float> logp;
  std::vector<std::vector<float>> mtp;
  TrainBatch b = one_sequence({1, 2, 40});
  EXPECT_THROW(m.forward(b, logp, mtp), Error);
  b = one_sequence({1});
  EXPECT_THROW(m.forward(b, logp, mtp), Error);
  EXPECT_THROW(m.backward({}, {}, 0), Error);
}

}  // namespace
}  // namespace whale
