// The training pipeline around the model: reasoning tasks and their checker, the BPE
// trainer, datasets (SFT masks, malformed lines), and `whale train` checkpoints and resume.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/tasks.h"

namespace whale::train {
namespace {

TEST(Tasks, TracesEndInTheAnswerAndTheCheckerAcceptsIt) {
  for (Task task : all_tasks())
    for (int64_t i = 0; i < 300; ++i) {
      const Problem p = make_problem(task, Split::Train, 7, i);
      SCOPED_TRACE(p.question + "\n" + p.trace);
      EXPECT_TRUE(check_answer(p, p.answer));
      EXPECT_TRUE(check_answer(p, "so the result is " + p.answer + "\n"));
      EXPECT_NE(p.trace.find(p.task == Task::Countdown ? p.answer : p.answer), std::string::npos);
      if (task != Task::Countdown) {
        EXPECT_FALSE(check_answer(p, std::to_string(std::stoll(p.answer) + 1)));
        EXPECT_FALSE(check_answer(p, p.answer + " or " + std::to_string(std::stoll(p.answer) + 1)));
      }
    }
}

TEST(Tasks, ArithmeticIsRight) {
  for (int64_t i = 0; i < 200; ++i) {
    const Problem a = make_problem(Task::Addition, Split::Train, 1, i);
    long long x, y;
    ASSERT_EQ(std::sscanf(a.question.c_str(), "What is %lld + %lld?", &x, &y), 2) << a.question;
    EXPECT_EQ(a.answer, std::to_string(x + y));
    const Problem m = make_problem(Task::Multiplication, Split::Train, 1, i);
    ASSERT_EQ(std::sscanf(m.question.c_str(), "What is %lld * %lld?", &x, &y), 2) << m.question;
    EXPECT_EQ(m.answer, std::to_string(x * y));
  }
}

TEST(Tasks, SplitsAreDisjointAndDeterministic) {
  for (Task task : all_tasks()) {
    std::set<std::string> train, test;
    for (int64_t i = 0; i < 400; ++i) train.insert(make_problem(task, Split::Train, 3, i).question);
    for (int64_t i = 0; i < 100; ++i) test.insert(make_problem(task, Split::Test, 3, i).question);
    for (const auto& q : test) EXPECT_EQ(train.count(q), 0u) << q;
    EXPECT_GT(test.size(), 50u) << task_name(task);  // varied
    EXPECT_EQ(make_problem(task, Split::Test, 3, 5).question, make_problem(task, Split::Test, 3, 5).question);
    EXPECT_NE(make_problem(task, Split::Test, 3, 5).question, make_problem(task, Split::Test, 4, 5).question);
  }
  EXPECT_EQ(parse_task("countdown"), Task::Countdown);
  EXPECT_THROW(parse_task("chess"), Error);
}

TEST(Tasks, CountdownChecker) {
  const std::vector<int64_t> nums = {25, 3, 4, 7};
  int64_t v = 0;
  EXPECT_TRUE(eval_countdown("(25 + 3) * 4", nums, v));
  EXPECT_EQ(v, 112);
  EXPECT_TRUE(eval_countdown("25 - 3 * 7", nums, v));
  EXPECT_EQ(v, 4);
  EXPECT_TRUE(eval_countdown("28 / 4", {28, 4}, v));
  EXPECT_EQ(v, 7);
  EXPECT_FALSE(eval_countdown("25 / 3", nums, v));       // inexact
  EXPECT_FALSE(eval_countdown("25 + 25", nums, v));      // used twice
  EXPECT_FALSE(eval_countdown("25 + 5", nums, v));       // not offered
  EXPECT_FALSE(eval_countdown("(25 + 3", nums, v));      // malformed
  EXPECT_FALSE(eval_countdown("4 / (7 - 7)", {4, 7, 7}, v));  // division by zero
  EXPECT_FALSE(eval_countdown("", nums, v));
  EXPECT_FALSE(eval_countdown(std::string(1000, '('), nums, v));
  Problem p{Task::Countdown, "", "", "", nums, 112};
  EXPECT_TRUE(check_answer(p, "(25 + 3) * 4 = 112"));
  EXPECT_TRUE(check_answer(p, "some steps\n4 * (3 + 25)"));
  EXPECT_FALSE(check_answer(p, "(25 + 3) * 4 + 7 = 119"));
  EXPECT_FALSE(check_answer(p, "112"));
}

std::vector<std::string> corpus() {
  std::vector<std::string> texts;
  for (Task task : all_tasks())
    for (int64_t i = 0; i < 200; ++i) {
      const Problem p = make_problem(task, Split::Train, 1, i);
      texts.push_back(p.question + "\n" + p.trace + "\n" + p.answer);
    }
  texts.push_back("Unicode: 深度求索 café — naïve 😀, tabs\tand  spaces\r\n");
  return texts;
}

TEST(BpeTrainer, LearnsMergesAndRoundTrips) {
  BpeTrainOptions o;
  o.vocab_size = 400;
  const TrainedTokenizer t = train_bpe(corpus(), o);
  EXPECT_EQ(t.vocab_size, 400);
  EXPECT_EQ(t.merges, 400 - 256 - int(deepseek_special_tokens().size()));
  auto tok = Tokenizer::from_json(t.tokenizer_json, t.config_json, "trained");
  EXPECT_EQ(tok->vocab_size(), 400);
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_EQ(tok->token_id("<｜User｜>"), 3);
  EXPECT_EQ(tok->token_id("</think>"), 6);
  for (const std::string& s : corpus()) EXPECT_EQ(tok->decode(tok->encode(s)), s);
  // Frequent words became single tokens; digits stay one per token.
  EXPECT_EQ(tok->encode(" carry").size(), 1u);
  EXPECT_EQ(tok->encode("12345").size(), 5u);
  const auto ids = tok->encode("<｜User｜>What is 1 + 2?<｜Assistant｜><think>");
  EXPECT_EQ(ids.front(), 3);
  EXPECT_EQ(ids.back(), 5);
  // Deterministic.
  EXPECT_EQ(train_bpe(corpus(), o).tokenizer_json, t.tokenizer_json);
  o.vocab_size = 100;
  EXPECT_THROW(train_bpe(corpus(), o), Error);
}

TEST(BpeTrainer, StopsAtMinFrequency) {
  BpeTrainOptions o;
  o.vocab_size = 100000;
  o.min_frequency = 2;
  const TrainedTokenizer t = train_bpe({"abab xyz"}, o);
  EXPECT_EQ(t.merges, 1);  // only "ab" occurs twice
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BpeTrainOptions o;
    o.vocab_size = 500;
    const TrainedTokenizer t = train_bpe(corpus(), o);
    tok_ = Tokenizer::from_json(t.tokenizer_json, t.config_json, "trained");
  }
  std::unique_ptr<Tokenizer> tok_;
  test::TempDir dir_;
};

TEST_F(DatasetTest, ChatExamplesPredictOnlyTheReply) {
  const std::string path = dir_ / "d.jsonl";
  test::write_file(path,
                   R"({"messages":[{"role":"user","content":"What is 2 + 3?"},{"role":"assistant","reasoning_content":"2 + 3 = 5","content":"5"}],"thinking":true})"
                   "\n"
                   R"({"messages":[{"role":"user","content":"What is 2 + 3?"},{"role":"assistant","reasoning_content":"2 + 3 = 5","content":"5"}],"thinking":false})"
                   "\n"
                   R"({"text":"2 + 3 = 5"})"
                   "\n");
  Dataset d({path}, *tok_, 512);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d.stats().skipped, 0);
  // Thinking on: prompt ends with <｜Assistant｜><think>; the reply is trace </think> answer EOS.
  const Example& on = d.example(0);
  EXPECT_EQ(tok_->decode(on.tokens), "<｜begin▁of▁sentence｜><｜User｜>What is 2 + 3?<｜Assistant｜><think>2 + 3 = 5</think>5<｜end▁of▁sentence｜>");
  std::vector<int32_t> predicted;
  for (size_t t = 0; t < on.tokens.size(); ++t)
    if (on.weight[t] > 0) predicted.push_back(on.tokens[t]);
  EXPECT_EQ(tok_->decode(predicted), "2 + 3 = 5</think>5<｜end▁of▁sentence｜>");
  // Thinking off: the prompt closes the think block, the reply is the answer alone.
  const Example& off = d.example(1);
  predicted.clear();
  for (size_t t = 0; t < off.tokens.size(); ++t)
    if (off.weight[t] > 0) predicted.push_back(off.tokens[t]);
  EXPECT_EQ(tok_->decode(predicted), "5<｜end▁of▁sentence｜>");
  EXPECT_NE(tok_->decode(off.tokens).find("<｜Assistant｜></think>5"), std::string::npos);
  // Text: every token after the first.
  const Example& text = d.example(2);
  EXPECT_EQ(text.weight[0], 0.0f);
  for (size_t t = 1; t < text.tokens.size(); ++t) EXPECT_EQ(text.weight[t], 1.0f);
}

TEST_F(DatasetTest, MalformedLinesAreSkippedAndCounted) {
  const std::string path = dir_ / "d.jsonl";
  test::write_file(path, "{\"text\":\"ok\"}\nnot json\n[1,2]\n{\"text\":5}\n{\"messages\":[{\"role\":\"user\"}]}\n"
                         "{\"other\":1}\n\xff\xfe\n\n{\"text\":\"also ok\"}\n"
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}],"
                         "\"thinking\":9598}\n");  // found by fuzz_train_data: a non-boolean threw past the parser
  Dataset d({path}, *tok_, 512);
  EXPECT_EQ(d.size(), 2u);
  EXPECT_EQ(d.stats().skipped, 7);
  ASSERT_FALSE(d.stats().errors.empty());
  EXPECT_NE(d.stats().errors[0].find("d.jsonl:2"), std::string::npos);
  test::write_file(path, "garbage\n");
  EXPECT_THROW(Dataset({path}, *tok_, 512), Error);
  EXPECT_THROW(Dataset({dir_ / "missing.jsonl"}, *tok_, 512), Error);
}

TEST_F(DatasetTest, BatchesDependOnlyOnSeedAndStepAndCoverEachEpoch) {
  const std::string path = dir_ / "d.jsonl";
  std::string lines;
  for (int i = 0; i < 10; ++i) lines += "{\"text\":\"" + std::string(size_t(i + 1), '7') + "\"}\n";  // one token per digit
  test::write_file(path, lines);
  Dataset d({path}, *tok_, 8);
  EXPECT_EQ(d.stats().truncated, 4);  // BOS + digits + EOS: the four longest were cut to 8 tokens
  std::multiset<size_t> lens;
  for (int64_t step = 0; step < 5; ++step) {  // 5 steps of 2 = one epoch
    const TrainBatch b = d.batch(9, step, 2);
    EXPECT_EQ(b.B, 2);
    EXPECT_LE(b.T, 8);
    const TrainBatch again = d.batch(9, step, 2);
    EXPECT_EQ(b.tokens, again.tokens);
    for (int64_t r = 0; r < 2; ++r) {
      size_t n = 0;
      for (int64_t t = 0; t < b.T; ++t) n += b.tokens[size_t(r * b.T + t)] != tok_->token_id("<｜▁pad▁｜>");
      lens.insert(n);
    }
  }
  std::multiset<size_t> expect;
  for (size_t i = 0; i < d.size(); ++i) expect.insert(d.example(i).tokens.size());
  EXPECT_EQ(lens, expect);
}

}  // namespace
}  // namespace whale::train

namespace whale::train {
namespace {

// A tiny R2 model (mHC, MoE, MTP) trained by the CLI.
class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    BpeTrainOptions o;
    o.vocab_size = 300;  // the golden r2 config has 320 ids
    const TrainedTokenizer t = train_bpe(corpus(), o);
    std::filesystem::create_directories(dir_ / "tok");
    test::write_file(dir_ / "tok/tokenizer.json", t.tokenizer_json);
    test::write_file(dir_ / "tok/tokenizer_config.json", t.config_json);
    auto r = test::run_whale({"data", "gen", "--count", "40", "--thinking", "0.5", "-o", dir_ / "d.jsonl"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  test::CommandResult train(const std::string& run, std::vector<std::string> extra) {
    std::vector<std::string> args = {"train", "--config", test::golden_dir("r2") + "/config.json", "--tokenizer",
                                     dir_ / "tok", "--data", dir_ / "d.jsonl", "--out", run, "--steps", "6",
                                     "--batch", "2", "--seq-len", "48", "--warmup", "2", "--lr", "3e-3",
                                     "--save-every", "2", "--log-every", "1", "-t", "2", "-q"};
    for (size_t i = 0; i < extra.size(); ++i) {  // an extra flag replaces the default's value
      auto it = std::find(args.begin(), args.end(), extra[i]);
      if (it != args.end() && i + 1 < extra.size() && extra[i].rfind("--", 0) == 0 && extra[i] != "--data") {
        *(it + 1) = extra[++i];
      } else {
        args.push_back(extra[i]);
      }
    }
    return test::run_whale(args);
  }
  test::TempDir dir_;
};

TEST_F(TrainCli, ResumedRunIsBitIdenticalAndServable) {
  auto r = train(dir_ / "a", {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = train(dir_ / "b", {"--stop-at", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(test::read_file(dir_ / "b/model/train_state.json").find("\"step\": 3"), std::string::npos);
  // A save cut off between its renames leaves only model.old: resuming uses it.
  std::filesystem::rename(dir_ / "b/model", dir_ / "b/model.old");
  r = train(dir_ / "b", {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string a = test::read_file(dir_ / "a/model/model.safetensors");
  ASSERT_GT(a.size(), 1000u);
  EXPECT_TRUE(a == test::read_file(dir_ / "b/model/model.safetensors"));
  EXPECT_TRUE(test::read_file(dir_ / "a/model/optimizer.bin") == test::read_file(dir_ / "b/model/optimizer.bin"));
  // The metrics log has one line per step and the loss went down.
  const std::string m = test::read_file(dir_ / "a/metrics.jsonl");
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 6);
  // The curves render as a self-contained HTML report.
  r = test::run_whale({"report", dir_ / "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string html = test::read_file(dir_ / "a/report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find(">loss<"), std::string::npos);
  EXPECT_NE(test::run_whale({"report", dir_ / "nothing"}).exit_code, 0);
  // The checkpoint is a model directory the engine runs.
  r = test::run_whale({"eval", "--model", dir_ / "a/model", "-n", "2", "--max-tokens", "8", "--tasks", "addition",
                       "--json", "-t", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"total\":2"), std::string::npos) << r.out;
}

TEST_F(TrainCli, GrpoRunsFromACheckpointAndResumes) {
  auto r = train(dir_ / "a", {"--steps", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> args = {"grpo", "--init", dir_ / "a/model", "--out", dir_ / "g", "--steps", "2",
                                   "--prompts", "2", "--group", "3", "--max-tokens", "6", "--kl-beta", "0.01",
                                   "--save-every", "1", "-t", "2", "-q"};
  r = test::run_whale(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string m = test::read_file(dir_ / "g/metrics.jsonl");
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 2) << m;
  EXPECT_NE(m.find("\"reward\""), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "g/reference/model.safetensors"));
  args[6] = "3";  // --steps 3: resumes at step 2
  r = test::run_whale(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(test::read_file(dir_ / "g/model/train_state.json").find("\"step\": 3"), std::string::npos);
  r = test::run_whale({"grpo", "--init", dir_ / "a/model", "--out", dir_ / "h", "--group", "1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--group"), std::string::npos) << r.err;
}

TEST_F(TrainCli, DivergenceStopsAndKeepsTheLastGoodCheckpoint) {
  auto r = train(dir_ / "c", {"--lr", "1e12", "--clip", "0", "--save-every", "1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("diverged"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir_ / "c/model/model.safetensors"));
}

TEST_F(TrainCli, BadArgumentsAreClearErrors) {
  auto r = train(dir_ / "d", {"--data", dir_ / "missing.jsonl"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("missing.jsonl"), std::string::npos) << r.err;
  test::write_file(dir_ / "bad.jsonl", "nope\n");
  r = test::run_whale({"train", "--config", test::golden_dir("r2") + "/config.json", "--tokenizer",
                       test::deepseek_v3_tokenizer(), "--data", dir_ / "d.jsonl", "--out", dir_ / "e"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("vocab_size"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace whale::train

#include "train/grpo.h"

namespace whale::train {
namespace {

TEST(Grpo, AdvantagesAndZeroVarianceFilter) {
  std::vector<bool> keep;
  // Group 1: rewards 1,0,0,1 (mean 0.5); group 2: all 1 (no signal).
  auto adv = group_advantages({1, 0, 0, 1, 1, 1, 1, 1}, 4, false, keep);
  EXPECT_EQ(keep, (std::vector<bool>{true, false}));
  EXPECT_FLOAT_EQ(adv[0], 0.5f);
  EXPECT_FLOAT_EQ(adv[1], -0.5f);
  EXPECT_FLOAT_EQ(adv[4], 0.0f);
  // std normalisation: unbiased std of {1,0,0,1} = sqrt(1/3)
  adv = group_advantages({1, 0, 0, 1, 1, 1, 1, 1}, 4, true, keep);
  EXPECT_NEAR(adv[0], 0.5 / (std::sqrt(1.0 / 3.0) + 1e-4), 1e-5);
  EXPECT_THROW(group_advantages({1, 0, 1}, 2, false, keep), Error);
}

// Two rows: row 0 has 2 sampled tokens, row 1 has 1 (T = 3, position 0 is the prompt).
struct LossCase {
  std::vector<float> mask = {0, 1, 1, 0, 1, 0};
  std::vector<float> adv = {1.0f, -2.0f};
};

TEST(Grpo, TokenMeanOnPolicyGradientIsMinusAdvantageOverTokens) {
  LossCase c;
  std::vector<float> logp = {0, -1, -2, 0, -0.5f, 0}, d;
  GrpoLossOptions o;
  const auto st = grpo_loss(logp, logp, nullptr, c.mask, c.adv, 2, 3, o, d);
  // ρ = 1: L = -(1 + 1 - 2) / 3 = 0; dL/dlogp = -A / 3
  EXPECT_NEAR(st.loss, 0.0, 1e-7);
  EXPECT_NEAR(d[1], -1.0 / 3, 1e-7);
  EXPECT_NEAR(d[2], -1.0 / 3, 1e-7);
  EXPECT_NEAR(d[4], 2.0 / 3, 1e-7);
  EXPECT_EQ(d[0], 0.0f);
  EXPECT_EQ(st.tokens, 3);
}

TEST(Grpo, SequenceMeanAndConstantAggregation) {
  LossCase c;
  std::vector<float> logp = {0, -1, -2, 0, -0.5f, 0}, d;
  GrpoLossOptions o;
  o.agg = LossAgg::SeqMeanTokenMean;  // weights 1/(B·|o_b|): row 0 → 1/4, row 1 → 1/2
  auto st = grpo_loss(logp, logp, nullptr, c.mask, c.adv, 2, 3, o, d);
  EXPECT_NEAR(d[1], -0.25, 1e-7);
  EXPECT_NEAR(d[4], 1.0, 1e-7);
  EXPECT_NEAR(st.loss, -(0.25 * 2 * 1.0 + 0.5 * -2.0), 1e-7);
  o.agg = LossAgg::TokenSumConst;  // 1/(B·C) with C = 10
  o.token_sum_const = 10;
  st = grpo_loss(logp, logp, nullptr, c.mask, c.adv, 2, 3, o, d);
  EXPECT_NEAR(d[1], -1.0 / 20, 1e-7);
  EXPECT_NEAR(d[4], 2.0 / 20, 1e-7);
}

TEST(Grpo, ClippingStopsTheGradientOutsideTheTrustRegion) {
  LossCase c;
  std::vector<float> old = {0, -1, -1, 0, -1, 0}, d;
  // Row 0 (A = 1): token 1 has ρ = e^0.5 > 1.28 → clipped (no gradient);
  // token 2 has ρ = e^-0.5 < 0.8 → min picks ρ·A (gradient -ρA).
  // Row 1 (A = -2): ρ = e^0.1 within [0.8, 1.28] → gradient -ρA.
  std::vector<float> logp = {0, -0.5f, -1.5f, 0, -0.9f, 0};
  GrpoLossOptions o;
  const auto st = grpo_loss(logp, old, nullptr, c.mask, c.adv, 2, 3, o, d);
  EXPECT_EQ(d[1], 0.0f);
  EXPECT_NEAR(d[2], -std::exp(-0.5) / 3, 1e-6);
  EXPECT_NEAR(d[4], 2 * std::exp(0.1) / 3, 1e-6);
  EXPECT_NEAR(st.clip_frac, 1.0 / 3, 1e-7);
  const double expect = -(1.28 * 1 + std::exp(-0.5) * 1 + std::exp(0.1) * -2) / 3;
  EXPECT_NEAR(st.loss, expect, 1e-6);
  // Clip-higher: with ε_high = 1 the first token is inside the region again.
  o.eps_high = 1.0f;
  grpo_loss(logp, old, nullptr, c.mask, c.adv, 2, 3, o, d);
  EXPECT_NEAR(d[1], -std::exp(0.5) / 3, 1e-6);
}

TEST(Grpo, K3KlAndItsGradientMatchFiniteDifferences) {
  LossCase c;
  c.adv = {0.0f, 0.0f};  // isolate the KL term
  std::vector<float> logp = {0, -1, -2, 0, -0.5f, 0}, ref = {0, -1.2f, -1.7f, 0, -0.5f, 0}, d, d2;
  GrpoLossOptions o;
  o.kl_beta = 0.5f;
  const auto st = grpo_loss(logp, logp, &ref, c.mask, c.adv, 2, 3, o, d);
  auto k3 = [](double x) { return std::exp(x) - x - 1; };
  EXPECT_NEAR(st.kl, (k3(-0.2) + k3(0.3) + k3(0.0)) / 3, 1e-6);
  EXPECT_NEAR(st.loss, 0.5 * (k3(-0.2) + k3(0.3)) / 3, 1e-6);
  for (size_t i : {1u, 2u, 4u}) {
    auto plus = logp, minus = logp;
    plus[i] += 1e-3f;
    minus[i] -= 1e-3f;
    const double fd = (grpo_loss(plus, plus, &ref, c.mask, c.adv, 2, 3, o, d2).loss -
                       grpo_loss(minus, minus, &ref, c.mask, c.adv, 2, 3, o, d2).loss) / 2e-3;
    EXPECT_NEAR(d[i], fd, 1e-4) << i;
  }
  EXPECT_THROW(grpo_loss(logp, logp, nullptr, c.mask, c.adv, 2, 3, o, d), Error);  // β without a reference
}

}  // namespace
}  // namespace whale::train

namespace whale::train {
namespace {

// The embedded default model (models/whale-r2-tiny) is what `whale run` uses when no model is named.
TEST(DefaultModel, RunAnswersWithoutAModelArgumentAndThinkingChangesTheReply) {
  const std::string dir = test::source_path("models/whale-r2-tiny");
  ASSERT_TRUE(std::filesystem::exists(dir + "/config.json")) << "the default model is committed in models/";
  EXPECT_LE(std::filesystem::file_size(dir + "/model.safetensors"), 50u << 20);
  auto on = test::run_whale({"run", "default", "What is 25 + 17?", "--think", "--temperature", "0", "--json", "-t", "2"});
  ASSERT_EQ(on.exit_code, 0) << on.err;
  auto off = test::run_whale({"run", "default", "What is 25 + 17?", "--no-think", "--temperature", "0", "--json", "-t", "2"});
  ASSERT_EQ(off.exit_code, 0) << off.err;
  const auto j_on = nlohmann::json::parse(on.out), j_off = nlohmann::json::parse(off.out);
  EXPECT_FALSE(j_on["reasoning_content"].get<std::string>().empty()) << on.out;  // it thought
  EXPECT_TRUE(!j_off.contains("reasoning_content") || j_off["reasoning_content"].is_null() ||
              j_off["reasoning_content"].get<std::string>().empty()) << off.out;
  EXPECT_FALSE(j_off["content"].get<std::string>().empty());
}

}  // namespace
}  // namespace whale::train
