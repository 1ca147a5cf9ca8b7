// The engine as `whale run` uses it: one conversation whose next turn reuses the cache of
// the previous one (prompt and answer blocks), stop strings, the thinking budget, cancellation
// and the context limit.
#include "core/error.h"
#include "model/hf_config.h"
#include "model/random_checkpoint.h"
#include "runtime/engine.h"
#include "engine_util.h"
#include "test_util.h"

namespace whale {
namespace {

TEST(StopMatcher, HoldsBackPartialMatchesAndCutsAtTheStop) {
  StopMatcher m({"STOP", "\n\n"});
  bool stopped = false;
  EXPECT_EQ(m.push("Hello ST", &stopped), "Hello ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.push("ART and\n", &stopped), "START and");
  EXPECT_EQ(m.push("\nmore", &stopped), "");
  EXPECT_TRUE(stopped);
  StopMatcher none({});
  EXPECT_EQ(none.push("abc", &stopped), "abc");
}

class Session : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    chat_ = new test::RandomChatModel("v3");
    tok_ = chat_->tok.get();
    model_ = chat_->model.get();
  }
  static void TearDownTestSuite() { delete chat_; }
  static EngineConfig chat(int64_t ctx) {  // as `whale run` sizes its engine
    EngineConfig c;
    c.parallel = 1;
    c.ctx = ctx;
    return c;
  }
  static EngineRequest request(const std::vector<int32_t>& prompt, int64_t max_tokens) {
    EngineRequest r;
    r.prompt = prompt;
    r.options.max_tokens = max_tokens;
    return r;
  }
  static test::RandomChatModel* chat_;
  static Tokenizer* tok_;
  static Model* model_;
};
test::RandomChatModel* Session::chat_;
Tokenizer* Session::tok_;
Model* Session::model_;

TEST_F(Session, TheNextTurnReusesThePreviousTurnsPromptAndAnswer) {
  Engine e(*model_, *tok_, chat(256));
  const auto turn1 = tok_->encode("<｜User｜>Hello, how are you today? Tell me something.<｜Assistant｜>", true);
  const RequestOutput a1 = e.run(request(turn1, 24));
  EXPECT_EQ(a1.stats.cached_tokens, 0);
  EXPECT_EQ(a1.stats.finish_reason, "length");
  // Turn 2: the conversation so far (prompt + answer) and a new question.
  std::vector<int32_t> turn2 = turn1;
  turn2.insert(turn2.end(), a1.tokens.begin(), a1.tokens.end());
  const auto more = tok_->encode("<｜User｜>And then?<｜Assistant｜>");
  turn2.insert(turn2.end(), more.begin(), more.end());
  const RequestOutput a2 = e.run(request(turn2, 8));
  // Whole blocks of turn 1's prompt and answer come from the cache: all but the last
  // partial one (positions 0 .. len(turn1) + 23 have cache entries).
  const int64_t computed = int64_t(turn1.size()) + 24 - 1;
  EXPECT_EQ(a2.stats.cached_tokens, computed / 16 * 16);
  EXPECT_GT(a2.stats.cached_tokens, int64_t(turn1.size()) / 16 * 16);  // answer blocks included
  // The same turn without any cache: the same answer (the reused entries were computed in the
  // decode form, equal to the prompt form up to rounding; greedy tokens agree here).
  EngineConfig cold = chat(256);
  cold.prefix_cache = false;
  Engine fresh(*model_, *tok_, cold);
  EXPECT_EQ(fresh.run(request(turn2, 8)).tokens, a2.tokens);
  // Asking the same again reuses the prompt (all but the block of its last token).
  const RequestOutput again = e.run(request(turn1, 24));
  EXPECT_EQ(again.stats.cached_tokens, (int64_t(turn1.size()) - 1) / 16 * 16);
  EXPECT_EQ(again.tokens, a1.tokens);
}

TEST_F(Session, ThinkingBudgetForcesTheEndOfReasoning) {
  Engine e(*model_, *tok_, chat(256));
  EngineRequest r = request(tok_->encode("<｜User｜>Hi<｜Assistant｜><think>", true), 20);
  r.options.starts_in_reasoning = true;
  r.options.thinking_budget = 4;
  const RequestOutput out = e.run(r);
  std::string reasoning, content;
  for (const auto& ev : out.events) (ev.kind == ParseEvent::Reasoning ? reasoning : content) += ev.text;
  // 4 sampled reasoning tokens, then the forced "</think>" (3 tokens in V3's vocabulary), which closes them.
  EXPECT_EQ(out.stats.reasoning_tokens, 4 + int64_t(tok_->encode("</think>").size()));
  EXPECT_EQ(reasoning, out.result.reasoning);
  EXPECT_FALSE(content.empty());
  EXPECT_EQ(out.stats.generated_tokens, 20);
}

TEST_F(Session, StopStringsEndTheAnswerBeforeThem) {
  Engine e(*model_, *tok_, chat(256));
  EngineRequest r = request(tok_->encode("<｜User｜>Hi<｜Assistant｜>", true), 30);
  r.parse = false;
  const RequestOutput full = e.run(r);
  const std::string text = full.result.content;
  ASSERT_GT(text.size(), 6u);
  r.options.stop = {text.substr(4, 2)};  // occurs at byte 4 (maybe earlier)
  const RequestOutput cut = e.run(r);
  EXPECT_EQ(cut.stats.finish_reason, "stop");
  EXPECT_EQ(cut.result.content, text.substr(0, text.find(r.options.stop[0])));
}

TEST_F(Session, CancelAndContextLimits) {
  Engine e(*model_, *tok_, chat(64));
  auto h = e.submit(request(tok_->encode("hello"), 1000));
  RequestOutput part, all;
  int pieces = 0;
  while (h->wait(part, std::chrono::milliseconds(5000))) {
    if (!part.events.empty() && ++pieces == 3) h->cancel();
    all.append(std::move(part));
    part = RequestOutput{};
  }
  EXPECT_EQ(all.stats.finish_reason, "cancelled");
  const RequestOutput out = e.run(request(tok_->encode("hello"), 1000));
  EXPECT_EQ(out.stats.finish_reason, "length");  // the 64-token context ends it
  EXPECT_EQ(out.stats.prompt_tokens + out.stats.generated_tokens, 64);
  EXPECT_THROW(e.submit(request(std::vector<int32_t>(100, 19923), 8)), Error);
}

}  // namespace
}  // namespace whale
