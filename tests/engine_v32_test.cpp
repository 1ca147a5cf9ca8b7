// DeepSeek-V3.2 in the serving engine: with sparse attention (index_topk 8, prompts of 20-60
// tokens) a request still gets the same tokens alone or batched, chunked or not, prefix-cache
// hit or miss, in both numerics. The indexer's keys are a second cache group: they are shared,
// copied and reused with the latents.

#include "runtime/engine.h"
#include "engine_util.h"
#include "test_util.h"

namespace whale {
namespace {

class EngineV32Test : public ::testing::TestWithParam<CacheNumerics> {
 protected:
  static void SetUpTestSuite() {
    chat_ = new test::RandomChatModel("v32");
    tok_ = chat_->tok.get();
    model_ = chat_->model.get();
  }
  static void TearDownTestSuite() { delete chat_; }
  void SetUp() override { model_->set_cache_numerics(GetParam()); }

  static EngineRequest request(const std::string& user, int64_t max_tokens) { return chat_->request(user, max_tokens); }
  static std::vector<EngineRequest> requests(int n) {
    std::vector<EngineRequest> out;
    for (int i = 0; i < n; ++i)
      out.push_back(request("Question " + std::to_string(i) + ": " + std::string(size_t(i * 11 % 37), 'y') +
                                " what is " + std::to_string(i * 41) + " times " + std::to_string(i + 3) + "?",
                            10));
    return out;
  }

  static test::RandomChatModel* chat_;
  static Tokenizer* tok_;
  static Model* model_;
};
test::RandomChatModel* EngineV32Test::chat_;
Tokenizer* EngineV32Test::tok_;
Model* EngineV32Test::model_;

TEST_P(EngineV32Test, BatchedAndChunkedRequestsGetWhatTheyGetAlone) {
  const auto rs = requests(8);
  ASSERT_GT(rs[0].prompt.size(), size_t(model_->config().index_topk));
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
  c.parallel = 8;
  c.ctx = 256;
  c.step_tokens = 24;  // prompts in chunks that cut across index_topk and the blocks
  c.prefill_chunk = 7;
  c.block_size = 4;
  Engine e(*model_, *tok_, c);
  const auto batched = test::run_all(e, rs);
  for (size_t i = 0; i < rs.size(); ++i) {
    EXPECT_EQ(batched[i].tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(batched[i].tokens.size(), 10u);
  }
}

TEST_P(EngineV32Test, PrefixCacheHitReturnsExactlyWhatAMissReturns) {
  EngineConfig c;
  c.parallel = 2;
  c.ctx = 256;
  c.block_size = 4;
  c.prefill_chunk = 9;
  Engine e(*model_, *tok_, c);
  const std::string shared = "You are a careful assistant. Think, then answer in one line. ";
  const auto miss = e.run(request(shared + "What is 17 times 19?", 12));
  const auto hit = e.run(request(shared + "What is 17 times 19?", 12));
  EXPECT_EQ(miss.stats.cached_tokens, 0);
  EXPECT_GT(hit.stats.cached_tokens, model_->config().index_topk);  // the reused keys reach past top-k
  EXPECT_EQ(hit.tokens, miss.tokens);
  const auto other = e.run(request(shared + "Name two rivers.", 12));
  EngineConfig cold = c;
  cold.prefix_cache = false;
  Engine e2(*model_, *tok_, cold);
  EXPECT_GT(other.stats.cached_tokens, 0);
  EXPECT_EQ(e2.run(request(shared + "Name two rivers.", 12)).tokens, other.tokens);
}

// The numerics are part of the cache's identity: blocks of one are never served to the other.
TEST_P(EngineV32Test, CacheGroupsNameTheNumerics) {
  const auto groups = model_->cache_groups();
  ASSERT_EQ(groups.size(), 2u);
  const bool official = GetParam() == CacheNumerics::Official;
  EXPECT_EQ(groups[0].kind, official ? "mla_latent_fp8" : "mla_latent");
  EXPECT_EQ(groups[1].kind, official ? "index_key_fp8" : "index_key");
  EXPECT_EQ(groups[1].dim, model_->config().index_head_dim);
}

INSTANTIATE_TEST_SUITE_P(Numerics, EngineV32Test, ::testing::Values(CacheNumerics::Official, CacheNumerics::Float),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace whale
