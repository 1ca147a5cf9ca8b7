// The forward pass against Hugging Face transformers (float32) on tiny real-layout
// checkpoints: every variant, every way of feeding the tokens.
#include <memory>

#include "model/model.h"
#include "chunked_prefill.h"
#include "test_util.h"

namespace whale {
namespace {

using test::load_golden;
using test::logits_close;

struct Variant {
  const char* name;
};

// A parameter names a case directory, and "@float" / "@official" the numerics of a model whose
// official inference code rounds its caches (V3.2: expected_official.json holds that reference).
class GoldenTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const std::string p = GetParam();
    dir_ = p.substr(0, p.find('@'));
    model_ = Model::load(test::golden_dir(dir_), pool_);
    if (p.ends_with("@float")) model_->set_cache_numerics(CacheNumerics::Float);
    expected_ = p.ends_with("@official") ? "expected_official.json" : "expected.json";
  }
  std::vector<test::GoldenCase> load_golden(const char*) const { return test::load_golden(dir_, expected_); }

  // Logits of every position: positions < prefill by one batched step, the rest one by one.
  std::vector<std::vector<float>> run(const std::vector<int32_t>& tokens, int64_t prefill, AttentionForm form) {
    model_->set_attention_form(form);
    const int64_t n = int64_t(tokens.size()), V = model_->config().vocab_size;
    auto cache = model_->make_cache(n, /*block_size=*/4);  // small blocks: sequences span several
    SeqCache seq;
    EXPECT_TRUE(seq.reserve(*cache, n));
    std::vector<float> logits(static_cast<size_t>(n * V));
    if (prefill > 0) {
      Batch b;
      b.add(&seq, tokens.data(), prefill, /*logits_for_last_only=*/false);
      model_->forward(b, *cache, logits.data());
    }
    for (int64_t i = prefill; i < n; ++i) {
      Batch b;
      b.add(&seq, &tokens[size_t(i)], 1);
      model_->forward(b, *cache, &logits[size_t(i * V)]);
    }
    std::vector<std::vector<float>> rows;
    for (int64_t i = 0; i < n; ++i) rows.emplace_back(logits.begin() + i * V, logits.begin() + (i + 1) * V);
    return rows;
  }

  void check(const test::GoldenCase& c, const std::vector<std::vector<float>>& got, const std::string& what) {
    ASSERT_EQ(got.size(), c.logits.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(logits_close(got[i], c.logits[i])) << what << ", position " << i;
  }

  ThreadPool pool_{2};
  std::unique_ptr<Model> model_;
  std::string dir_, expected_;
};

// The residual stream after every layer, where the reference gives it: a wrong layer shows as
// itself, not only as wrong logits.
TEST_P(GoldenTest, EveryLayerMatchesReference) {
  for (const auto& c : load_golden(GetParam())) {
    if (c.layers.empty()) continue;
    std::vector<std::vector<float>> got(c.layers.size());
    // The residual: [T, hidden], or [T, hc_mult · hidden] with mHC.
    const int64_t D = model_->config().hidden_size * std::max<int64_t>(1, model_->config().hc_mult);
    model_->set_layer_probe([&](int64_t l, const float* h, int64_t T) { got[size_t(l)].assign(h, h + T * D); });
    run(c.tokens, int64_t(c.tokens.size()), AttentionForm::Auto);
    model_->set_layer_probe(nullptr);
    for (size_t l = 0; l < c.layers.size(); ++l)
      for (size_t i = 0; i < c.layers[l].size(); ++i)
        EXPECT_TRUE(logits_close(std::vector<float>(got[l].begin() + int64_t(i) * D, got[l].begin() + int64_t(i + 1) * D),
                                 c.layers[l][i]))
            << "layer " << l << ", position " << i;
  }
}

TEST_P(GoldenTest, BatchedPrefillMatchesReference) {
  for (const auto& c : load_golden(GetParam())) check(c, run(c.tokens, int64_t(c.tokens.size()), AttentionForm::Auto), "prefill");
}

TEST_P(GoldenTest, StepByStepDecodeMatchesReference) {
  for (const auto& c : load_golden(GetParam())) check(c, run(c.tokens, 0, AttentionForm::Auto), "decode");
}

TEST_P(GoldenTest, PrefillThenDecodeMatchesReference) {
  for (const auto& c : load_golden(GetParam())) {
    const int64_t half = int64_t(c.tokens.size()) / 2;
    check(c, run(c.tokens, half, AttentionForm::Auto), "prefill half, decode rest");
  }
}

TEST_P(GoldenTest, BothAttentionFormsMatchReference) {
  for (const auto& c : load_golden(GetParam())) {
    check(c, run(c.tokens, int64_t(c.tokens.size()), AttentionForm::Absorbed), "absorbed prefill");
    check(c, run(c.tokens, 0, AttentionForm::MHA), "MHA decode");
  }
}

TEST_P(GoldenTest, PrefillAndDecodeAgreeWithEachOther) {
  for (const auto& c : load_golden(GetParam())) {
    auto prefill = run(c.tokens, int64_t(c.tokens.size()), AttentionForm::Auto);
    auto decode = run(c.tokens, 0, AttentionForm::Auto);
    for (size_t i = 0; i < prefill.size(); ++i) EXPECT_TRUE(logits_close(decode[i], prefill[i])) << "position " << i;
  }
}

// Two sequences in one forward give each exactly what it gets alone: the batch must not leak
// between sequences, and results must not depend on batch composition.
TEST_P(GoldenTest, BatchedSequencesAreIndependentAndBitExact) {
  auto cases = load_golden(GetParam());
  ASSERT_GE(cases.size(), 2u);
  const auto& a = cases[0].tokens;
  const auto& b = cases[1].tokens;
  const int64_t V = model_->config().vocab_size;
  model_->set_attention_form(AttentionForm::Auto);

  auto alone_a = run(a, int64_t(a.size()), AttentionForm::Auto);
  auto alone_b = run(b, int64_t(b.size()), AttentionForm::Auto);

  auto cache = model_->make_cache(int64_t(a.size() + b.size()) + 8, 4);  // + room for block rounding
  SeqCache sa, sb;
  ASSERT_TRUE(sa.reserve(*cache, int64_t(a.size())));
  ASSERT_TRUE(sb.reserve(*cache, int64_t(b.size())));
  Batch batch;
  batch.add(&sa, a.data(), int64_t(a.size()), false);
  batch.add(&sb, b.data(), int64_t(b.size()), false);
  std::vector<float> logits(batch.logit_rows.size() * size_t(V));
  model_->forward(batch, *cache, logits.data());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(std::vector<float>(logits.begin() + i * V, logits.begin() + (i + 1) * V), alone_a[i]) << "seq a pos " << i;
  for (size_t i = 0; i < b.size(); ++i) {
    const size_t row = a.size() + i;
    EXPECT_EQ(std::vector<float>(logits.begin() + row * V, logits.begin() + (row + 1) * V), alone_b[i]) << "seq b pos " << i;
  }
}

// Prompt chunks (MHA form) give every token the same logits however the prompt is cut: the
// serving engine relies on it for prefix-cache hits that equal misses.
TEST_P(GoldenTest, PromptChunkingDoesNotChangeResults) {
  for (const auto& c : load_golden(GetParam())) {
    const int64_t n = int64_t(c.tokens.size());
    auto run = [&](std::vector<int64_t> cuts) { return test::prefill_in_chunks(*model_, c.tokens, cuts); };
    const auto whole = run({0});
    for (std::vector<int64_t> cuts : {std::vector<int64_t>{0, 1}, {0, n / 2}, {0, 2, n - 1}})
      EXPECT_EQ(run(cuts), whole) << "cut at " << cuts[1];
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, GoldenTest,
                         ::testing::Values("v2_lite", "v2", "v3", "v3_fp8", "v31_fp8_ue8m0", "dense_tied", "r2", "r2_hc1",
                                           "v3_mtp", "v32@float", "v32@official", "v32_fp8@float", "v32_fp8@official", "v4@float", "v4@official", "v4_fp8@float",
                                           "v4_fp8@official", "v4_mtp@official"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) if (ch == '@') ch = '_';
                           return name;
                         });

}  // namespace
}  // namespace whale
