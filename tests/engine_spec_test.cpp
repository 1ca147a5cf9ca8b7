// MTP speculation on the golden checkpoints, token ids only (no tokenizer): whatever the
// drafts, the output is plain decoding's, greedy and seeded sampling alike; with the model's
// own continuation as the proposals every draft stands (the accept path end to end). The
// same through the `whale generate` command.
#include "core/error.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace whale {
namespace {

EngineRequest ids_request(const std::vector<int32_t>& prompt, int64_t n, float temperature = 0, uint64_t seed = 0) {
  EngineRequest r;
  r.prompt = prompt;
  r.options.max_tokens = n;
  r.options.sampling.temperature = temperature;
  r.options.sampling.seed = seed;
  r.options.ignore_eos = true;
  r.parse = false;
  return r;
}

EngineConfig one_sequence(int64_t draft) {
  EngineConfig c;
  c.parallel = 1;
  c.ctx = 256;
  c.block_size = 4;
  c.prefix_cache = false;
  c.draft = draft;
  // For V4 (windows of 8 tokens) the fewest window slots: every window the MTP module and the
  // verification read must be one the sequence holds, none found by chance in a kept slot.
  c.step_tokens = c.prefill_chunk = 32;  // a golden prompt in one step
  c.window_slots = c.parallel * (8 / 4 + 5) + 32 / 4;
  return c;
}

class GoldenSpeculation : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { model_ = Model::load(test::golden_dir(GetParam()), pool_); }
  ThreadPool pool_{2};
  std::unique_ptr<Model> model_;
};

TEST_P(GoldenSpeculation, OutputEqualsPlainDecodingForAnyDraftLength) {
  for (const auto& c : test::load_golden(GetParam())) {
    for (float temperature : {0.0f, 1.0f}) {
      Engine plain(*model_, nullptr, one_sequence(0));
      const auto want = plain.run(ids_request(c.tokens, 24, temperature, 11)).tokens;
      ASSERT_EQ(want.size(), 24u);
      for (int k : {1, 2, 3, 5}) {
        Engine spec(*model_, nullptr, one_sequence(k));
        EXPECT_EQ(spec.run(ids_request(c.tokens, 24, temperature, 11)).tokens, want)
            << "draft " << k << ", temperature " << temperature;
        const auto m = spec.metrics();
        EXPECT_GT(m.spec_rounds_total, 0u);
        EXPECT_LE(m.spec_draft_tokens_total, m.spec_rounds_total * uint64_t(k));
      }
    }
  }
}

TEST_P(GoldenSpeculation, AcceptedDraftsKeepTheOutputExact) {
  const auto c = test::load_golden(GetParam())[0];
  Engine plain(*model_, nullptr, one_sequence(0));
  const auto longer = plain.run(ids_request(c.tokens, 40)).tokens;  // proposals may run past the 30 asked for
  const std::vector<int32_t> expected(longer.begin(), longer.begin() + 30);
  for (int k : {1, 3, 4}) {
    EngineConfig ec = one_sequence(k);
    ec.proposer = [&](int64_t i) { return longer[size_t(i)]; };
    Engine spec(*model_, nullptr, ec);
    EXPECT_EQ(spec.run(ids_request(c.tokens, 30)).tokens, expected) << "draft " << k;
    const auto m = spec.metrics();
    EXPECT_EQ(m.spec_accepted_tokens_total, m.spec_draft_tokens_total);  // every proposal stood
    EXPECT_LT(m.steps_total, 30u / uint64_t(k + 1) + 3);                  // k + 1 tokens per step
  }
  // Proposals that are right only sometimes: mixed accept/reject, still exact.
  EngineConfig ec = one_sequence(3);
  ec.proposer = [&](int64_t i) { return i % 3 == 2 ? (longer[size_t(i)] + 1) % 300 : longer[size_t(i)]; };
  Engine spec(*model_, nullptr, ec);
  EXPECT_EQ(spec.run(ids_request(c.tokens, 30)).tokens, expected);
  const auto m = spec.metrics();
  EXPECT_GT(m.spec_accepted_tokens_total, 0u);
  EXPECT_LT(m.spec_accepted_tokens_total, m.spec_draft_tokens_total);
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenSpeculation, ::testing::Values("r2", "v3_mtp", "v4_mtp"),
                         [](const auto& info) { return std::string(info.param); });

TEST(GoldenSpeculationConfig, NeedsAnMtpModuleAndASaneDraftLength) {
  ThreadPool pool(1);
  auto plain = Model::load(test::golden_dir("v3"), pool);
  EXPECT_THROW(Engine(*plain, nullptr, one_sequence(2)), Error);
  auto mtp = Model::load(test::golden_dir("v3_mtp"), pool);
  EXPECT_THROW(Engine(*mtp, nullptr, one_sequence(9)), Error);
  EXPECT_THROW(Engine(*mtp, nullptr, one_sequence(-1)), Error);
  // Text options need a tokenizer.
  Engine e(*mtp, nullptr, one_sequence(0));
  auto r = ids_request({1, 2, 3}, 4);
  r.parse = true;
  EXPECT_THROW(e.submit(r), Error);
  r.parse = false;
  r.options.stop = {"x"};
  EXPECT_THROW(e.submit(r), Error);
}

// `whale generate --spec mtp` is the same engine: the same ids as without, seeded sampling included.
TEST(GoldenSpeculationCli, GenerateWithAndWithoutSpeculationAgree) {
  for (const std::vector<std::string>& sampling :
       {std::vector<std::string>{}, std::vector<std::string>{"--temperature", "0.8", "--top-p", "0.9", "--seed", "3"}}) {
    std::vector<std::string> args = {"generate", "--model", test::golden_dir("r2"), "--tokens", "5,6,7", "--max-tokens", "16"};
    args.insert(args.end(), sampling.begin(), sampling.end());
    const auto plain = test::run_whale(args);
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    args.insert(args.end(), {"--spec", "mtp", "--draft", "3"});
    const auto spec = test::run_whale(args);
    ASSERT_EQ(spec.exit_code, 0) << spec.err;
    EXPECT_EQ(spec.out, plain.out);
  }
}

}  // namespace
}  // namespace whale
