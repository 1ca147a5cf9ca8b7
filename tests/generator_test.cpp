// ChatSession: prefix reuse, stop strings, the thinking budget, cancellation.
#include "core/error.h"
#include "formats/hf_config.h"
#include "model/random_checkpoint.h"
#include "runtime/generator.h"
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
  void SetUp() override {
    auto cfg = nlohmann::json::parse(test::read_file(test::golden_dir("v3") + "/config.json"));
    cfg["vocab_size"] = 129280;
    const std::string text = cfg.dump();
    write_random_checkpoint(text, parse_hf_config(text, "cfg"), dir_.path(), {}, pool_);
    tok_ = Tokenizer::load(test::deepseek_v3_tokenizer());
    model_ = Model::load(dir_.path(), pool_);
  }
  test::TempDir dir_;
  ThreadPool pool_{2};
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Model> model_;
};

TEST_F(Session, ReusesThePrefixAndGivesTheSameAnswer) {
  ChatSession s(*model_, *tok_, 256);
  GenerationOptions o;
  o.max_tokens = 8;
  auto prompt = tok_->encode("<｜User｜>Hello, how are you?<｜Assistant｜>", true);
  auto st1 = s.generate(prompt, o, [](const ParseEvent&) {});
  auto first = s.last_tokens();
  EXPECT_EQ(st1.cached_tokens, 0);
  EXPECT_EQ(st1.finish_reason, "length");
  auto st2 = s.generate(prompt, o, [](const ParseEvent&) {});
  EXPECT_EQ(st2.cached_tokens, int64_t(prompt.size()) - 1);  // all but the last prompt token
  EXPECT_EQ(s.last_tokens(), first);                        // same answer from the cache
  s.reset();
  s.generate(prompt, o, [](const ParseEvent&) {});
  EXPECT_EQ(s.last_tokens(), first);
}

TEST_F(Session, ThinkingBudgetForcesTheEndOfReasoning) {
  ChatSession s(*model_, *tok_, 256);
  GenerationOptions o;
  o.max_tokens = 20;
  o.starts_in_reasoning = true;
  o.thinking_budget = 4;
  std::string reasoning, content;
  auto st = s.generate(tok_->encode("<｜User｜>Hi<｜Assistant｜><think>", true), o, [&](const ParseEvent& e) {
    (e.kind == ParseEvent::Reasoning ? reasoning : content) += e.text;
  });

  // 4 sampled reasoning tokens, then the forced "</think>" (3 tokens in V3's vocabulary), which closes them.
  EXPECT_EQ(st.reasoning_tokens, 4 + int64_t(tok_->encode("</think>").size()));
  EXPECT_EQ(reasoning, s.last_output().reasoning);
  EXPECT_FALSE(content.empty());
  EXPECT_EQ(st.generated_tokens, 20);
}

TEST_F(Session, CancelAndContextLimits) {
  ChatSession s(*model_, *tok_, 64);
  GenerationOptions o;
  o.max_tokens = 1000;
  std::atomic<bool> cancel{false};
  int events = 0;
  auto st = s.generate(tok_->encode("hello"), o, [&](const ParseEvent&) {
    if (++events == 3) cancel = true;
  }, &cancel);
  EXPECT_EQ(st.finish_reason, "cancelled");
  st = s.generate(tok_->encode("hello"), o, [](const ParseEvent&) {});
  EXPECT_EQ(st.finish_reason, "length");  // the 64-token context ends it
  EXPECT_EQ(st.prompt_tokens + st.generated_tokens, 64);
  std::vector<int32_t> too_long(100, 19923);
  EXPECT_THROW(s.generate(too_long, o, [](const ParseEvent&) {}), Error);
}

}  // namespace
}  // namespace whale
