// mHC sites against transformers' DeepseekV4HyperConnection, and MTP modules against the
// reference built from transformers' decoder layers (tests/golden/make_golden_r2.py).
#include "kernels/mhc.h"
#include "model/model.h"
#include "test_util.h"

namespace whale {
namespace {

TEST(Mhc, SiteWeightsMatchTransformers) {
  auto j = nlohmann::json::parse(test::read_file(test::golden_dir("mhc_site.json")));
  for (const auto& s : j["sites"]) {
    const int64_t n = s["n"], D = s["dim"];
    auto x = s["x"].get<std::vector<float>>();
    auto fn_values = s["fn"].get<std::vector<float>>();
    auto base = s["base"].get<std::vector<float>>();
    auto scale = s["scale"].get<std::vector<float>>();
    Weight fn;
    fn.dtype = DType::F32;
    fn.rows = (2 + n) * n;
    fn.cols = n * D;
    fn.data = reinterpret_cast<const uint8_t*>(fn_values.data());
    std::vector<float> pre(static_cast<size_t>(n)), post(static_cast<size_t>(n)), comb(static_cast<size_t>(n * n)),
        y(static_cast<size_t>(D));
    const HyperSiteMath m{n, D, 1e-6f, 1e-6f, s["iters"].get<int>()};
    mhc_site_weights(m, x.data(), fn, base.data(), scale.data(), pre.data(), post.data(), comb.data());
    mhc_collapse(x.data(), pre.data(), n, D, y.data());
    auto near = [](const std::vector<float>& got, const nlohmann::json& ref, const char* what) {
      auto r = ref.get<std::vector<float>>();
      ASSERT_EQ(got.size(), r.size()) << what;
      for (size_t i = 0; i < r.size(); ++i) EXPECT_NEAR(got[i], r[i], 1e-5 * (1 + std::fabs(r[i]))) << what << "[" << i << "]";
    };
    near(post, s["post"], "post");
    near(comb, s["comb"], "comb");
    near(y, s["collapsed"], "collapsed");
    if (s["iters"].get<int>() >= 20) {  // doubly stochastic: rows and columns sum to one
      for (int64_t i = 0; i < n; ++i) {
        float row = 0, col = 0;
        for (int64_t k = 0; k < n; ++k) row += comb[size_t(i * n + k)], col += comb[size_t(k * n + i)];
        EXPECT_NEAR(row, 1.0f, 1e-5f);
        EXPECT_NEAR(col, 1.0f, 1e-5f);
      }
    }
  }
}

TEST(Mhc, SinkhornIsDoublyStochasticForExtremeInputs) {
  for (float spread : {0.1f, 5.0f, 30.0f}) {
    const int64_t n = 4;
    std::vector<float> comb(16);
    for (int64_t i = 0; i < 16; ++i) comb[size_t(i)] = std::exp(spread * std::sin(float(i * 7 % 11)));
    for (int64_t i = 0; i < n; ++i) {  // rows as a softmax would leave them
      float s = 0;
      for (int64_t k = 0; k < n; ++k) s += comb[size_t(i * n + k)];
      for (int64_t k = 0; k < n; ++k) comb[size_t(i * n + k)] = comb[size_t(i * n + k)] / s + 1e-6f;
    }
    sinkhorn_knopp(comb.data(), n, 20, 1e-6f);
    for (int64_t i = 0; i < n; ++i) {
      float row = 0, col = 0;
      for (int64_t k = 0; k < n; ++k) row += comb[size_t(i * n + k)], col += comb[size_t(k * n + i)];
      EXPECT_NEAR(col, 1.0f, 1e-5f) << spread;
      if (spread < 10) {  // very peaked inputs converge more slowly
        EXPECT_NEAR(row, 1.0f, 1e-4f) << spread;
      }
    }
  }
}

// The MTP module's logits (predicting token i+2 from hidden i and token i+1), batched and
// step by step, against the reference.
class MtpGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(MtpGolden, MatchesReference) {
  ThreadPool pool(2);
  auto model = Model::load(test::golden_dir(GetParam()), pool);
  ASSERT_EQ(model->mtp_modules(), 1);
  const int64_t V = model->config().vocab_size, D = model->config().hidden_size;
  auto golden = nlohmann::json::parse(test::read_file(test::golden_dir(GetParam()) + "/expected.json"));
  for (const auto& c : golden["cases"]) {
    auto tokens = c["tokens"].get<std::vector<int32_t>>();
    auto expected = c["mtp_logits"].get<std::vector<std::vector<float>>>();
    const int64_t S = int64_t(tokens.size());
    auto cache = model->make_cache(S, 4);
    SeqCache seq;
    ASSERT_TRUE(seq.reserve(*cache, S));
    Batch b;
    b.add(&seq, tokens.data(), S, false);
    std::vector<float> logits(static_cast<size_t>(S * V)), hidden(static_cast<size_t>(S * D));
    model->forward(b, *cache, logits.data(), hidden.data());

    for (bool batched : {true, false}) {
      auto mcache = model->make_mtp_cache(S, 4);
      SeqCache mseq;
      ASSERT_TRUE(mseq.reserve(*mcache, S - 1));
      std::vector<float> mtp(static_cast<size_t>((S - 1) * V));
      if (batched) {
        Batch mb;
        mb.add(&mseq, tokens.data() + 1, S - 1, false);
        model->mtp_forward(0, mb, hidden.data(), *mcache, mtp.data());
      } else {
        for (int64_t i = 0; i + 1 < S; ++i) {
          Batch mb;
          mb.add(&mseq, &tokens[size_t(i + 1)], 1);
          model->mtp_forward(0, mb, &hidden[size_t(i * D)], *mcache, &mtp[size_t(i * V)]);
        }
      }
      for (int64_t i = 0; i + 1 < S; ++i)
        EXPECT_TRUE(test::logits_close(std::vector<float>(mtp.begin() + i * V, mtp.begin() + (i + 1) * V), expected[size_t(i)]))
            << GetParam() << (batched ? " batched" : " step by step") << ", position " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, MtpGolden, ::testing::Values("r2", "v3_mtp"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace whale
