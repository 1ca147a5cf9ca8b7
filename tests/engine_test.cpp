// The serving engine: continuous batching gives every request exactly what it gets alone,
// prefix-cache hits equal misses, memory admission queues instead of failing, cancellation
// frees the request's blocks, JSON mode and logprobs.
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/error.h"
#include "model/hf_config.h"
#include "model/random_checkpoint.h"
#include "runtime/engine.h"
#include "runtime/json_grammar.h"
#include "engine_util.h"
#include "test_util.h"
#include "train/dataset.h"
#include "train/tasks.h"

namespace whale {
namespace {

// Metrics are refreshed after each engine step: a request's output (and so a finished request)
// may be seen before the step that produced it has updated the counters. Waits for that step.
EngineConfig with_parallel(int64_t n) {
  EngineConfig c;
  c.parallel = n;
  return c;
}
EngineConfig with_draft(int64_t n) {
  EngineConfig c;
  c.draft = n;
  return c;
}

EngineMetrics idle_metrics(const Engine& e) {
  for (int i = 0; i < 200 && (e.metrics().running > 0 || e.metrics().kv_blocks_free != e.metrics().kv_blocks_total); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return e.metrics();
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    chat_ = new test::RandomChatModel("v3");
    tok_ = chat_->tok.get();
    model_ = chat_->model.get();
  }
  static void TearDownTestSuite() { delete chat_; }
  static EngineRequest request(const std::string& user, int64_t max_tokens) { return chat_->request(user, max_tokens); }
  static std::vector<std::string> prompts(int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i)
      out.push_back("Question " + std::to_string(i) + ": " + std::string(size_t(i * 7 % 23), 'x') + " what is " +
                    std::to_string(i * 37) + " plus " + std::to_string(i + 5) + "?");
    return out;
  }
  static test::RandomChatModel* chat_;
  static Tokenizer* tok_;
  static Model* model_;
};
test::RandomChatModel* EngineTest::chat_;
Tokenizer* EngineTest::tok_;
Model* EngineTest::model_;

TEST_F(EngineTest, SixteenConcurrentRequestsEachGetWhatTheyGetAlone) {
  const auto ps = prompts(16);
  std::vector<RequestOutput> alone;
  {
    EngineConfig c;
    c.parallel = 1;
    c.ctx = 256;
    c.prefix_cache = false;
    Engine e(*model_, *tok_, c);
    for (const auto& p : ps) alone.push_back(e.run(request(p, 10)));
  }
  EngineConfig c;
  c.parallel = 16;
  c.ctx = 256;
  c.step_tokens = 40;     // prompts arrive in chunks interleaved with other requests' decoding
  c.prefill_chunk = 13;
  c.block_size = 8;
  Engine e(*model_, *tok_, c);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& p : ps) hs.push_back(e.submit(request(p, 10)));
  for (size_t i = 0; i < hs.size(); ++i) {
    RequestOutput all, part;
    while (hs[i]->wait(part))
      if (part.finished) all = part;
    ASSERT_TRUE(all.finished);
    EXPECT_EQ(all.tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(all.result, alone[i].result) << "request " << i;
    EXPECT_EQ(all.stats.finish_reason, alone[i].stats.finish_reason);
  }
  const auto m = e.metrics();
  EXPECT_EQ(m.requests_total, 16u);
  EXPECT_GE(m.steps_total, 10u);
  EXPECT_LT(m.steps_total, 16u * 12u);  // requests decoded together, not one after another
}

TEST_F(EngineTest, PrefixCacheHitReturnsExactlyWhatAMissReturns) {
  EngineConfig c;
  c.parallel = 2;
  c.ctx = 256;
  c.block_size = 8;
  c.prefill_chunk = 16;
  const std::string shared = "You are a careful assistant. Answer briefly and show the steps. ";
  Engine e(*model_, *tok_, c);
  auto miss = e.run(request(shared + "What is 12 times 13?", 12));
  EXPECT_EQ(miss.stats.cached_tokens, 0);
  auto hit = e.run(request(shared + "What is 12 times 13?", 12));
  const int64_t n = int64_t(request(shared + "What is 12 times 13?", 1).prompt.size());
  EXPECT_EQ(hit.stats.cached_tokens, (n - 1) / 8 * 8);
  EXPECT_GT(hit.stats.cached_tokens, 0);
  EXPECT_EQ(hit.tokens, miss.tokens);

  // A different question after the shared system text hits the shared blocks only.
  auto other = e.run(request(shared + "Name three prime numbers.", 12));
  EXPECT_GT(other.stats.cached_tokens, 0);
  EXPECT_LT(other.stats.cached_tokens, hit.stats.cached_tokens + 1);
  EngineConfig cold = c;
  cold.prefix_cache = false;
  Engine e2(*model_, *tok_, cold);
  EXPECT_EQ(e2.run(request(shared + "Name three prime numbers.", 12)).tokens, other.tokens);
  EXPECT_GT(e.metrics().cached_tokens_total, 0u);
}

TEST_F(EngineTest, RequestsQueueWhenTheCacheIsFullAndAllFinish) {
  EngineConfig c;
  c.parallel = 4;
  c.ctx = 64;
  c.kv_tokens = 64;  // room for one worst-case request at a time
  c.block_size = 8;
  Engine e(*model_, *tok_, c);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& p : prompts(6)) hs.push_back(e.submit(request(p, 30)));
  for (auto& h : hs) {
    RequestOutput part, last;
    while (h->wait(part))
      if (part.finished) last = part;
    EXPECT_TRUE(last.error.empty()) << last.error;
    EXPECT_EQ(last.stats.generated_tokens + 0, last.tokens.size());
  }
  const auto m = idle_metrics(e);
  EXPECT_EQ(m.requests_total, 6u);
  EXPECT_EQ(m.kv_blocks_free, m.kv_blocks_total);  // everything freed or evictable
}

TEST_F(EngineTest, CancelStopsARequestAndFreesItsBlocks) {
  EngineConfig c;
  c.parallel = 2;
  c.ctx = 512;
  c.prefix_cache = false;
  Engine e(*model_, *tok_, c);
  auto h = e.submit(request("Tell me a long story.", 400));
  RequestOutput part;
  ASSERT_TRUE(h->wait(part, std::chrono::milliseconds(5000)));
  h->cancel();
  RequestOutput last;
  while (h->wait(part))
    if (part.finished) last = part;
  EXPECT_EQ(last.stats.finish_reason, "cancelled");
  EXPECT_LT(last.stats.generated_tokens, 400);
  const auto m = idle_metrics(e);
  EXPECT_EQ(m.kv_blocks_free, m.kv_blocks_total);
}

TEST_F(EngineTest, RejectsRequestsThatCanNeverRun) {
  EngineConfig c;
  c.ctx = 16;
  Engine e(*model_, *tok_, c);
  EXPECT_THROW(e.submit(EngineRequest{}), Error);
  EXPECT_THROW(e.submit(request(std::string(200, 'a'), 4)), Error);
  auto r = request("hi", 4);
  r.prompt.push_back(1 << 30);
  EXPECT_THROW(e.submit(r), Error);
  EXPECT_THROW(Engine(*model_, *tok_, with_parallel(0)), Error);
}

TEST_F(EngineTest, LogprobsDescribeTheModelDistribution) {
  EngineConfig c;
  c.ctx = 128;
  Engine e(*model_, *tok_, c);
  auto r = request("Count to five.", 6);
  r.top_logprobs = 3;
  auto out = e.run(r);
  ASSERT_EQ(out.logprobs.size(), out.tokens.size());
  for (size_t i = 0; i < out.logprobs.size(); ++i) {
    const auto& lp = out.logprobs[i];
    EXPECT_EQ(lp.id, out.tokens[i]);
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_LE(lp.logprob, 0.0f);
    EXPECT_GE(lp.top[0].second, lp.top[1].second);
    EXPECT_GE(lp.top[1].second, lp.top[2].second);
    EXPECT_FLOAT_EQ(lp.top[0].second, lp.logprob);  // greedy picks the most likely token
  }
}

TEST_F(EngineTest, JsonModeWritesOnlyValidJson) {
  EngineConfig c;
  c.ctx = 256;
  Engine e(*model_, *tok_, c);
  for (float temperature : {0.0f, 1.0f}) {
    auto r = request("Reply with a JSON object.", 60);
    r.json = JsonGrammar::any_object();
    r.options.sampling.temperature = temperature;
    r.options.sampling.seed = 7;
    auto out = e.run(r);
    const std::string text = out.result.content;
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text[0], '{');
    JsonMatcher g(JsonGrammar::any_object());  // every prefix the model wrote is a prefix of valid JSON
    EXPECT_TRUE(g.accepts(text)) << text;
    if (out.stats.finish_reason == "stop") {
      EXPECT_TRUE(nlohmann::json::accept(text)) << text;
    }
  }
}

// JSON mode always ends with a whole object: when max_tokens is near, the engine forces the
// object's shortest completion (finding: `{` and then whitespace until max_tokens).
TEST_F(EngineTest, JsonModeAlwaysEndsWithACompleteObject) {
  EngineConfig c;
  c.ctx = 256;
  Engine e(*model_, *tok_, c);
  int cut = 0;
  for (int64_t max_tokens : {3, 5, 8, 13, 21, 40}) {
    for (uint64_t seed = 0; seed < 6; ++seed) {
      auto r = request("Reply with a JSON object.", max_tokens);
      r.json = JsonGrammar::any_object();
      r.options.sampling.temperature = 1.0f;
      r.options.sampling.seed = seed;
      auto out = e.run(r);
      const std::string text = out.result.content;
      const auto j = nlohmann::json::parse(text, nullptr, false);
      EXPECT_TRUE(j.is_object()) << "max_tokens " << max_tokens << " seed " << seed << ": " << text;
      cut += out.stats.generated_tokens + 4 >= max_tokens;  // closed at the limit (forced, or the model's last tokens fitting)
      size_t run = 0, longest = 0;  // whitespace outside strings is bounded; count all of it
      for (char ch : text) longest = std::max(longest, run = (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') ? run + 1 : 0);
      EXPECT_LE(longest, size_t(JsonMatcher::kMaxWhitespace) + 8) << text;
    }
  }
  EXPECT_GT(cut, 0);  // some answers did reach max_tokens: those are the ones closed in time
}

// tool_choice "required" / named: the call names a declared tool and its arguments are one JSON
// object valid under that tool's parameters, in every tool-call syntax (JSON and DSML), whatever
// the (random) model would write, even when max_tokens is tight (finding: a call to an
// undeclared function, arguments that were not JSON).
TEST_F(EngineTest, ForcedToolCallsNameADeclaredToolWithValidArguments) {
  EngineConfig c;
  c.ctx = 320;
  Engine e(*model_, *tok_, c);
  const std::vector<std::string> names = {"get_weather", "get_time", "search", "get"};
  const char* schemas[] = {
      R"({"type":"object","properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false})",
      R"({"type":"object","properties":{"tz":{"type":"string"}},"additionalProperties":false})",
      R"({"type":"object","properties":{"query":{"type":"string","minLength":1,"maxLength":20},"limit":{"type":"integer","minimum":1,"maximum":10}},"required":["query","limit"],"additionalProperties":false})",
      R"({"type":"object"})"};
  std::vector<std::shared_ptr<const JsonGrammar>> grammars;
  for (const char* s : schemas) grammars.push_back(JsonGrammar::compile(nlohmann::ordered_json::parse(s)));
  // Checked here by hand, not by the grammar: what each schema demands.
  auto valid = [](const std::string& name, const nlohmann::json& a) {
    if (!a.is_object()) return false;
    auto only = [&](std::initializer_list<const char*> keys) {
      for (auto it = a.begin(); it != a.end(); ++it)
        if (std::none_of(keys.begin(), keys.end(), [&](const char* k) { return it.key() == k; })) return false;
      return true;
    };
    if (name == "get_weather")
      return only({"city", "unit"}) && a.contains("city") && a["city"].is_string() &&
             nlohmann::json(a["city"]).get<std::string>().size() <= 4 * 12 && a.contains("unit") &&
             (a["unit"] == "c" || a["unit"] == "f");
    if (name == "get_time") return only({"tz"}) && (!a.contains("tz") || a["tz"].is_string());
    if (name == "search")
      return only({"query", "limit"}) && a.contains("query") && a["query"].is_string() && !a["query"].get<std::string>().empty() &&
             a.contains("limit") && a["limit"].is_number_integer() && a["limit"] >= 1 && a["limit"] <= 10;
    return true;
  };
  std::set<std::string> chosen;
  int refused = 0;
  for (ChatFormat f : {ChatFormat::V3, ChatFormat::V31, ChatFormat::V32, ChatFormat::V4}) {
    for (bool one : {false, true}) {
      for (int64_t max_tokens : {40, 160}) {  // (DSML markup alone is ~20 tokens with this tokenizer)
        for (uint64_t seed = 0; seed < 2; ++seed) {
          auto r = request("Call a tool.", max_tokens);
          r.options.tool_syntax = tool_call_syntax(f);
          r.options.sampling.temperature = 1.0f;
          r.options.sampling.seed = seed;
          r.tool_call = forced_tool_call(f, one ? std::vector<std::string>{"search"} : names);
          if (one) r.tool_call_arguments = {grammars[2]};
          else r.tool_call_arguments = grammars;
          const std::string where = std::string(chat_format_name(f)) + (one ? " named" : " required") + " max_tokens " +
                                    std::to_string(max_tokens) + " seed " + std::to_string(seed);
          RequestOutput out;
          try {
            out = e.run(r);
          } catch (const Error& err) {  // the shortest valid call does not fit: refused, not cut
            EXPECT_NE(std::string(err.what()).find("too small for the shortest tool call"), std::string::npos) << err.what();
            EXPECT_EQ(max_tokens, 40) << where;
            ++refused;
            continue;
          }
          ASSERT_GE(out.result.tool_calls.size(), 1u) << where << ": " << out.result.content;
          if (!one) chosen.insert(out.result.tool_calls[0].name);
          const ParsedToolCall& call = out.result.tool_calls[0];
          if (one) EXPECT_EQ(call.name, "search") << where;
          else EXPECT_NE(std::find(names.begin(), names.end(), call.name), names.end()) << where << ": " << call.name;
          const auto args = nlohmann::json::parse(call.arguments, nullptr, false);
          EXPECT_TRUE(args.is_object()) << where << ": " << call.arguments;
          EXPECT_TRUE(valid(call.name, args)) << where << ": " << call.name << " " << call.arguments;
          EXPECT_EQ(call.arguments.find("DSML"), std::string::npos) << where << ": " << call.arguments;
        }
      }
    }
  }
  // A name that begins another ("get" / "get_weather") can be chosen too: the model may end it.
  auto r = request("Call a tool.", 48);
  r.options.tool_syntax = ToolCallSyntax::V31;
  r.options.sampling.temperature = 0.0f;
  r.tool_call = forced_tool_call(ChatFormat::V31, {"get", "get_weather"});
  const auto out = e.run(r);
  ASSERT_EQ(out.result.tool_calls.size(), 1u);
  EXPECT_TRUE(out.result.tool_calls[0].name == "get" || out.result.tool_calls[0].name == "get_weather");
  EXPECT_GT(chosen.size(), 1u);  // the sampled names vary: the choice is the model's
  EXPECT_GT(refused, 0);         // DSML "search" (two required parameters) needs more than 40 tokens
}

// MTP speculation in the engine, on the trained default model (its MTP module drafts well
// enough that every path runs: accepted drafts, refused ones, the catch-up after each).
class EngineSpeculation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pool_ = new ThreadPool(2);
    const std::string dir = test::source_path("models/whale-r2-tiny");
    tok_ = Tokenizer::load(dir).release();
    model_ = Model::load(dir, *pool_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tok_;
    delete pool_;
  }
  static std::vector<EngineRequest> requests(int n, double temperature) {
    std::vector<EngineRequest> out;
    const auto tasks = train::all_tasks();
    for (int i = 0; i < n; ++i) {
      const auto p = train::make_problem(tasks[size_t(i) % tasks.size()], train::Split::Test, 7, i);
      EngineRequest r;
      r.prompt = tok_->encode(train::chat_prompt(p.question, i % 3 != 2));
      r.options.max_tokens = 48 + 8 * i;
      r.options.sampling.temperature = temperature;
      r.options.sampling.seed = uint64_t(100 + i);
      r.top_logprobs = i % 2 ? 2 : -1;
      out.push_back(std::move(r));
    }
    return out;
  }
  static ThreadPool* pool_;
  static Tokenizer* tok_;
  static Model* model_;
};
ThreadPool* EngineSpeculation::pool_;
Tokenizer* EngineSpeculation::tok_;
Model* EngineSpeculation::model_;

TEST_F(EngineSpeculation, OutputEqualsPlainDecodingGreedyAndSeededSampling) {
  for (double temperature : {0.0, 0.9}) {
    const auto rs = requests(7, temperature);
    EngineConfig plain;
    plain.parallel = 1;
    plain.ctx = 512;
    plain.prefix_cache = false;
    Engine p(*model_, *tok_, plain);
    const auto want = test::run_all(p, rs);
    for (int64_t draft : {1, 3}) {
      EngineConfig c;
      c.parallel = 4;
      c.ctx = 512;
      c.block_size = 8;
      c.prefill_chunk = 13;  // prompts in chunks, interleaved with drafting sequences
      c.step_tokens = 24;
      c.draft = draft;
      Engine e(*model_, *tok_, c);
      const auto got = test::run_all(e, rs);
      for (size_t i = 0; i < rs.size(); ++i) {
        SCOPED_TRACE("temperature " + std::to_string(temperature) + ", draft " + std::to_string(draft) + ", request " +
                     std::to_string(i));
        ASSERT_TRUE(got[i].finished);
        EXPECT_EQ(got[i].tokens, want[i].tokens);
        EXPECT_EQ(got[i].result, want[i].result);
        EXPECT_EQ(got[i].stats.finish_reason, want[i].stats.finish_reason);
        ASSERT_EQ(got[i].logprobs.size(), want[i].logprobs.size());
        for (size_t j = 0; j < got[i].logprobs.size(); ++j) {
          EXPECT_EQ(got[i].logprobs[j].logprob, want[i].logprobs[j].logprob);
          EXPECT_EQ(got[i].logprobs[j].top, want[i].logprobs[j].top);
        }
      }
      const auto m = idle_metrics(e);
      ASSERT_EQ(m.spec_accepted_at.size(), size_t(draft));
      EXPECT_GT(m.spec_accepted_tokens_total, 0u);
      EXPECT_LT(m.spec_accepted_tokens_total, m.spec_draft_tokens_total);
      uint64_t by_position = 0;
      for (size_t j = 0; j < m.spec_accepted_at.size(); ++j) {
        by_position += m.spec_accepted_at[j];
        if (j > 0) {
          EXPECT_LE(m.spec_accepted_at[j], m.spec_accepted_at[j - 1]);  // position j needs j-1
        }
      }
      EXPECT_EQ(by_position, m.spec_accepted_tokens_total);
      EXPECT_LE(m.spec_draft_tokens_total, m.spec_rounds_total * uint64_t(draft));
      if (temperature == 0.0) {
        EXPECT_LT(m.steps_total, idle_metrics(p).steps_total);  // fewer steps than one token each
      }
      EXPECT_EQ(m.kv_blocks_free, m.kv_blocks_total);  // every block back (the prefix cache's are evictable)
    }
  }
}

TEST_F(EngineSpeculation, PrefixCacheHitsKeepTheOutputAndTheDrafts) {
  EngineConfig c;
  c.parallel = 2;
  c.ctx = 512;
  c.block_size = 8;
  c.draft = 2;
  Engine e(*model_, *tok_, c);
  auto r = requests(1, 0.0)[0];
  r.options.max_tokens = 64;
  const auto miss = e.run(r);
  const auto m1 = idle_metrics(e);
  const auto hit = e.run(r);
  const auto m2 = idle_metrics(e);
  EXPECT_GT(hit.stats.cached_tokens, 0);
  EXPECT_EQ(hit.tokens, miss.tokens);
  // The MTP latents came from the cached blocks: the drafts, hence the counts, are the same.
  EXPECT_EQ(m2.spec_accepted_tokens_total - m1.spec_accepted_tokens_total, m1.spec_accepted_tokens_total);
  EXPECT_EQ(m2.spec_draft_tokens_total - m1.spec_draft_tokens_total, m1.spec_draft_tokens_total);
}

TEST_F(EngineSpeculation, RejectsDraftsItCannotMake) {
  EXPECT_THROW(Engine(*model_, *tok_, with_draft(9)), Error);
  EXPECT_THROW(Engine(*model_, *tok_, with_draft(-1)), Error);
}

TEST_F(EngineTest, SpeculationNeedsAnMtpModule) {
  if (model_->mtp_modules() > 0) GTEST_SKIP() << "the test model has an MTP module";
  try {
    Engine e(*model_, *tok_, with_draft(2));
    FAIL() << "expected an error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("no MTP module"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace whale
