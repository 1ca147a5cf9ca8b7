// DeepSeek-V4 in the serving engine: requests crossing the sliding window and the CSA / HCA
// windows get the same tokens alone or batched, chunked or not, prefix-cache hit or miss, in
// both numerics (the window, compressor inputs and entries are cache groups like the latents).

#include "runtime/engine.h"
#include "core/error.h"
#include "engine_util.h"
#include "test_util.h"

namespace whale {
namespace {

class EngineV4Test : public ::testing::TestWithParam<CacheNumerics> {
 protected:
  static void SetUpTestSuite() {
    chat_ = new test::RandomChatModel("v4");
    tok_ = chat_->tok.get();
    model_ = chat_->model.get();
  }
  static void TearDownTestSuite() { delete chat_; }
  void SetUp() override { model_->set_cache_numerics(GetParam()); }

  static EngineRequest request(const std::string& user, int64_t max_tokens) { return chat_->request(user, max_tokens); }
  // The fewest window slots the engine accepts: every window read must be one the sequence
  // holds (a value read from a slot given up fails), none served by chance from a kept one.
  static int64_t fewest_window_slots(const EngineConfig& c) {
    const int64_t W = 8;  // the golden config's sliding window, 2 × the CSA rate, the HCA rate
    return c.parallel * ((W + c.block_size - 1) / c.block_size + 5) + (c.step_tokens + c.block_size - 1) / c.block_size;
  }

  static test::RandomChatModel* chat_;
  static Tokenizer* tok_;
  static Model* model_;
};
test::RandomChatModel* EngineV4Test::chat_;
Tokenizer* EngineV4Test::tok_;
Model* EngineV4Test::model_;

TEST_P(EngineV4Test, BatchedAndChunkedRequestsGetWhatTheyGetAlone) {
  std::vector<EngineRequest> rs;
  for (int i = 0; i < 6; ++i)
    rs.push_back(request("Question " + std::to_string(i) + ": " + std::string(size_t(i * 9 % 31), 'z') + " what is " +
                             std::to_string(i * 53) + " minus " + std::to_string(i + 7) + "?",
                         12));
  ASSERT_GT(rs[0].prompt.size(), size_t(model_->config().sliding_window));
  std::vector<RequestOutput> alone;
  {
    EngineConfig c;
    c.parallel = 1;
    c.ctx = 256;
    c.prefix_cache = false;
    Engine e(*model_, *tok_, c);
    for (const auto& r : rs) alone.push_back(e.run(r));
  }
  EngineConfig c;
  c.parallel = 6;
  c.ctx = 256;
  c.step_tokens = 20;  // chunks that cut windows of 4 and 8 anywhere
  c.prefill_chunk = 5;
  c.block_size = 4;
  c.window_slots = fewest_window_slots(c);
  Engine e(*model_, *tok_, c);
  const auto batched = test::run_all(e, rs);
  for (size_t i = 0; i < rs.size(); ++i) {
    EXPECT_EQ(batched[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(batched[i].tokens.size(), 12u);
  }
}

TEST_P(EngineV4Test, PrefixCacheHitReturnsExactlyWhatAMissReturns) {
  EngineConfig c;
  c.parallel = 2;
  c.ctx = 256;
  c.block_size = 8;
  c.prefill_chunk = 7;
  Engine e(*model_, *tok_, c);
  const std::string shared = "You are a careful assistant. Think first, then answer in one line, please. ";
  const auto miss = e.run(request(shared + "What is 21 times 3?", 12));
  const auto hit = e.run(request(shared + "What is 21 times 3?", 12));
  EXPECT_EQ(miss.stats.cached_tokens, 0);
  EXPECT_GT(hit.stats.cached_tokens, model_->config().sliding_window);
  EXPECT_EQ(hit.tokens, miss.tokens);
  const auto other = e.run(request(shared + "Name a colour.", 12));
  EngineConfig cold = c;
  cold.prefix_cache = false;
  Engine e2(*model_, *tok_, cold);
  EXPECT_GT(other.stats.cached_tokens, 0);
  EXPECT_EQ(e2.run(request(shared + "Name a colour.", 12)).tokens, other.tokens);
}

// With the fewest window slots, other requests between two identical ones reuse the first's
// windows: the second finds fewer (here no) cached tokens it can continue from, and still
// returns exactly what the first returned.
TEST_P(EngineV4Test, APrefixWhoseWindowsWereReusedIsRecomputedNotMisread) {
  EngineConfig c;
  c.parallel = 2;
  c.ctx = 256;
  c.block_size = 8;
  c.prefill_chunk = 7;
  c.step_tokens = 16;
  c.window_slots = fewest_window_slots(c);
  Engine e(*model_, *tok_, c);
  const std::string shared = "You are a careful assistant. Think first, then answer in one line, please. ";
  const auto first = e.run(request(shared + "What is 21 times 3?", 12));
  const auto kept = e.run(request(shared + "What is 21 times 3?", 12));
  EXPECT_GT(kept.stats.cached_tokens, model_->config().sliding_window);  // its windows were still there
  EXPECT_EQ(kept.tokens, first.tokens);
  for (int i = 0; i < 8; ++i) e.run(request("Something else entirely, number " + std::to_string(i) + ", and a longer tail to fill blocks.", 12));
  const auto again = e.run(request(shared + "What is 21 times 3?", 12));
  EXPECT_LT(again.stats.cached_tokens, kept.stats.cached_tokens);
  EXPECT_EQ(again.tokens, first.tokens);
}

// A block size that cannot hold the per-window entries is refused with the reason.
TEST_P(EngineV4Test, BlockSizeMustFitTheCompressedEntries) {
  EngineConfig c;
  c.block_size = 3;  // neither divides nor is a multiple of 4 and 8
  try {
    Engine e(*model_, *tok_, c);
    FAIL() << "accepted a block of 3 tokens";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("cannot hold"), std::string::npos) << err.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Numerics, EngineV4Test, ::testing::Values(CacheNumerics::Official, CacheNumerics::Float),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace whale
