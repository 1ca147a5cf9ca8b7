// whale train            train a model (pretraining on text, SFT on chat examples)
// whale data gen         write verifiable reasoning tasks as JSONL
// whale tokenizer train  learn a byte-level BPE tokenizer from text
// whale eval             held-out accuracy per task, thinking on or off
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "runtime/model_bundle.h"
#include "tokenizer/bpe_trainer.h"
#include "model/hf_config.h"
#include "train/evaluate.h"
#include "train/optimizer.h"
#include "train/grpo.h"
#include "train/tasks.h"
#include "train/trainer.h"

namespace whale {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// A training step allocates and frees the same activation buffers every time. glibc would hand
// large ones back to the kernel (mmap/trim) and fault in fresh zeroed pages on the next step
// (a tenth of a step's time in page clearing); keeping freed memory in the heap reuses them.
void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

// --- whale data gen --------------------------------------------------------------
struct DataOptions {
  std::string tasks = "all", split = "train", format = "chat", out;
  int64_t count = 1000;
  uint64_t seed = 1;
  double thinking = 1.0;  // fraction of chat examples with thinking on
};

void run_data_gen(const DataOptions& o) {
  const auto tasks = train::parse_task_list(o.tasks);
  if (o.split != "train" && o.split != "test") fail("--split: train or test");
  if (o.format != "chat" && o.format != "text") fail("--format: chat or text");
  const train::Split split = o.split == "test" ? train::Split::Test : train::Split::Train;
  std::ofstream f;
  if (!o.out.empty()) {
    f.open(o.out, std::ios::binary | std::ios::trunc);
    if (!f) fail(o.out, ": cannot write");
  }
  std::ostream& out = o.out.empty() ? std::cout : f;
  std::mt19937_64 coin(o.seed ^ 0x7468696e6bull);
  for (int64_t i = 0; i < o.count; ++i) {
    // Tasks interleave so any prefix of the file is balanced.
    const train::Task task = tasks[size_t(i) % tasks.size()];
    const train::Problem p = train::make_problem(task, split, o.seed, i / int64_t(tasks.size()));
    json j;
    if (o.format == "text") {
      j["text"] = p.question + "\n" + p.trace + "\nAnswer: " + p.answer;
    } else {
      const bool thinking = std::uniform_real_distribution<double>(0, 1)(coin) < o.thinking;
      j["messages"] = json::array({{{"role", "user"}, {"content", p.question}},
                                   {{"role", "assistant"}, {"reasoning_content", p.trace}, {"content", p.answer}}});
      j["thinking"] = thinking;
    }
    j["task"] = train::task_name(task);
    j["answer"] = p.answer;
    if (task == train::Task::Countdown) {
      j["numbers"] = p.numbers;
      j["target"] = p.target;
    }
    out << j.dump() << "\n";
  }
  if (!out) fail(o.out.empty() ? "stdout" : o.out, ": write failed");
}

// --- whale tokenizer train ---------------------------------------------------------
struct TokTrainOptions {
  std::vector<std::string> inputs;
  std::string out;
  BpeTrainOptions bpe;
};

void run_tokenizer_train(const TokTrainOptions& o) {
  std::vector<std::string> texts;
  for (const std::string& path : o.inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open");
    const bool jsonl = path.size() > 6 && path.substr(path.size() - 6) == ".jsonl";
    std::string line;
    if (!jsonl) {
      std::stringstream ss;
      ss << in.rdbuf();
      texts.push_back(ss.str());
      continue;
    }
    int64_t n = 0, skipped = 0;
    while (std::getline(in, line)) {  // the text of a dataset line: "text", or every message's strings
      ++n;
      auto j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        skipped += !line.empty();
        continue;
      }
      if (j.contains("text") && j["text"].is_string()) texts.push_back(j["text"]);
      if (j.contains("messages") && j["messages"].is_array())
        for (const auto& m : j["messages"])
          for (const char* k : {"content", "reasoning_content"})
            if (m.is_object() && m.contains(k) && m[k].is_string()) texts.push_back(m[k]);
    }
    if (skipped) std::fprintf(stderr, "%s: %lld malformed lines skipped\n", path.c_str(), (long long)skipped);
  }
  const TrainedTokenizer t = train_bpe(texts, o.bpe);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) fail(o.out, ": cannot create: ", ec.message());
  for (auto [name, text] : {std::pair{"tokenizer.json", &t.tokenizer_json}, {"tokenizer_config.json", &t.config_json}}) {
    std::ofstream f(fs::path(o.out) / name, std::ios::binary | std::ios::trunc);
    f << *text;
    if (!f) fail((fs::path(o.out) / name).string(), ": write failed");
  }
  std::printf("wrote %s: %d ids (%zu specials, 256 bytes, %d merges)\n", o.out.c_str(), t.vocab_size,
              deepseek_special_tokens().size(), t.merges);
}

// --- whale eval --------------------------------------------------------------------
struct EvalCliOptions {
  std::string model, tasks = "all", thinking = "both";
  train::EvalOptions eval;
  int threads = 0;
  bool json_out = false;
};

void run_eval(const EvalCliOptions& o) {
  ThreadPool pool(o.threads);
  ModelBundle b = ModelBundle::load(resolve_model(o.model), pool, "v3.1");
  train::EvalOptions e = o.eval;
  e.tasks = train::parse_task_list(o.tasks);
  std::vector<bool> modes;
  if (o.thinking == "both") modes = {true, false};
  else if (o.thinking == "on") modes = {true};
  else if (o.thinking == "off") modes = {false};
  else fail("--thinking: on, off or both");
  json all = json::array();
  if (!o.json_out) std::printf("%-16s %-9s %9s %8s %12s\n", "task", "thinking", "accuracy", "n", "tokens/ans");
  for (bool thinking : modes) {
    e.thinking = thinking;
    for (const auto& a : train::evaluate(*b.model, *b.tokenizer, e)) {
      if (o.json_out)
        all.push_back({{"task", train::task_name(a.task)}, {"thinking", thinking}, {"accuracy", a.accuracy()},
                       {"correct", a.correct}, {"total", a.total}, {"mean_tokens", a.mean_tokens}});
      else
        std::printf("%-16s %-9s %8.1f%% %8lld %12.1f\n", train::task_name(a.task), thinking ? "on" : "off",
                    100 * a.accuracy(), (long long)a.total, a.mean_tokens);
    }
  }
  if (o.json_out) std::printf("%s\n", all.dump().c_str());
}

// --- whale train-bench ---------------------------------------------------------------
struct TrainBenchOptions {
  std::string config;
  int64_t batch = 8, seq = 128, steps = 5;
  int threads = 0;
};

// One training step as `whale train` runs it (forward, backward with the MTP and balance
// terms, clipping, AdamW, router-bias update) on random tokens; the median of `steps`
// after two warm-up steps. bench/train_speed.sh runs the PyTorch twin beside it.
void run_train_bench(const TrainBenchOptions& o) {
  const std::string text = train::read_text_file(o.config);
  const ModelConfig cfg = parse_hf_config(text, o.config);
  if (o.batch < 1 || o.seq < 3 || o.steps < 1) fail("train-bench: batch >= 1, seq-len >= 3, steps >= 1");
  ThreadPool pool(o.threads);
  train::TrainModel m(cfg, pool);
  m.init_random(1);
  train::AdamW opt(m, train::AdamWConfig{});
  train::TrainBatch b;
  b.B = o.batch;
  b.T = o.seq;
  std::mt19937_64 g(0);
  for (int64_t i = 0; i < b.B * b.T; ++i) b.tokens.push_back(int32_t(g() % uint64_t(cfg.vocab_size)));
  b.weight.assign(size_t(b.B * b.T), 1.0f);
  for (int64_t r = 0; r < b.B; ++r) b.weight[size_t(r * b.T)] = 0.0f;
  std::vector<double> times;
  double loss = 0;
  for (int64_t s = 0; s < o.steps + 2; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    m.zero_grads();
    loss = train::cross_entropy_step(m, b, train::LossOptions{}, 1.0f).total;
    train::clip_grad_norm(m.grads(), 1.0f);
    opt.step(m, 1e-3f, pool);
    m.update_router_bias(1e-3f);
    if (s >= 2) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2];
  json j = {{"engine", "whale"}, {"threads", pool.size()}, {"batch", o.batch}, {"seq", o.seq}, {"step_s", med},
            {"tokens_per_s", double(o.batch * o.seq) / med}, {"loss", loss}};
  std::printf("%s\n", j.dump().c_str());
}

// --- whale report ---------------------------------------------------------------------
// RUN/report.html: one SVG line chart per numeric metric of RUN/metrics.jsonl (training or
// GRPO), x = step. Self-contained (no scripts, no external files).
std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : c == '\'' ? "&#39;" : std::string(1, c);
  return o;
}

std::string svg_chart(const std::string& name, const std::vector<std::pair<double, double>>& pts) {
  const double W = 460, H = 180, L = 56, R = 10, T = 22, B = 26;
  double x0 = pts.front().first, x1 = pts.back().first, y0 = pts.front().second, y1 = y0;
  for (auto [x, y] : pts) y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  char buf[256];
  std::string s = "<svg xmlns='http://www.w3.org/2000/svg' width='460' height='180'>";
  s += "<text x='56' y='14' font-size='13' font-family='sans-serif'>" + html_escape(name) + "</text>";
  s += "<rect x='56' y='22' width='394' height='132' fill='none' stroke='#ccc'/>";
  std::snprintf(buf, sizeof buf,
                "<text x='52' y='26' font-size='10' text-anchor='end'>%.4g</text><text x='52' y='154' font-size='10' "
                "text-anchor='end'>%.4g</text><text x='56' y='170' font-size='10'>%.0f</text><text x='450' y='170' "
                "font-size='10' text-anchor='end'>%.0f</text>",
                y1, y0, x0, x1);
  s += buf;
  s += "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='";
  for (auto [x, y] : pts) {
    std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(x), py(y));
    s += buf;
  }
  return s + "'/></svg>";
}

void run_report(const std::string& run) {
  const fs::path path = fs::path(run) / "metrics.jsonl";
  std::ifstream in(path);
  if (!in) fail(path.string(), ": cannot open (is ", run, " a training run directory?)");
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  std::vector<std::string> order;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;
    ++n;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "step" || !it.value().is_number()) continue;
      if (!series.count(it.key())) order.push_back(it.key());
      series[it.key()].emplace_back(j["step"].get<double>(), it.value().get<double>());
    }
  }
  if (n == 0) fail(path.string(), ": no metrics yet");
  std::string html = "<!doctype html><meta charset='utf-8'><title>whale run " + html_escape(run) +
                     "</title><body style='font-family:sans-serif'><h2>" + html_escape(run) + "</h2><p>" + std::to_string(n) +
                     " logged steps</p>";
  for (const std::string& k : order) html += svg_chart(k, series[k]) + "\n";
  html += "</body>\n";
  const fs::path out = fs::path(run) / "report.html";
  std::ofstream f(out, std::ios::trunc);
  f << html;
  if (!f) fail(out.string(), ": write failed");
  std::printf("wrote %s (%zu charts, %lld steps)\n", out.string().c_str(), order.size(), (long long)n);
}

}  // namespace

void register_train(CLI::App& app) {
  auto o = std::make_shared<train::TrainOptions>();
  auto* cmd = app.add_subcommand("train", "Train a model: pretraining on {\"text\"} lines, SFT on {\"messages\"} lines");
  cmd->add_option("--config", o->config, "config.json of a new model (random init)");
  cmd->add_option("--init", o->init, "Start from this model directory's weights instead");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory (default: the --init model's)");
  cmd->add_option("--data", o->data, "JSONL dataset file(s)")->required();
  cmd->add_option("--out", o->out, "Run directory: model/ checkpoint, metrics.jsonl; an existing one resumes")->required();
  cmd->add_option("--steps", o->steps, "Optimizer steps (default 1000)");
  cmd->add_option("--stop-at", o->stop_at, "End this invocation at this step (checkpointed; run again to go on)");
  cmd->add_option("--batch", o->batch, "Sequences per micro-batch (default 16)");
  cmd->add_option("--accum", o->accum, "Micro-batches per step (default 1)");
  cmd->add_option("--seq-len", o->seq_len, "Longest example in tokens; longer ones are cut (default 512)");
  cmd->add_option("--lr", o->lr, "Peak learning rate (default 1e-3)");
  cmd->add_option("--min-lr", o->min_lr, "Learning rate at the end of the cosine (default 1e-4)");
  cmd->add_option("--warmup", o->warmup, "Linear warmup steps (default 50)");
  cmd->add_option("--clip", o->clip, "Gradient norm clip, 0 = off (default 1)");
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay on matrices (default 0.1)");
  cmd->add_option("--mtp-lambda", o->loss.mtp_lambda, "MTP loss weight λ (default 0.3)");
  cmd->add_option("--balance-alpha", o->loss.balance_alpha, "Sequence-wise balance loss weight α (default 1e-4)");
  cmd->add_option("--bias-gamma", o->bias_gamma, "Router correction-bias update speed γ (default 1e-3)");
  cmd->add_option("--save-every", o->save_every, "Checkpoint interval in steps (default 100)");
  cmd->add_option("--log-every", o->log_every, "Metrics interval in steps (default 10)");
  cmd->add_option("--seed", o->seed, "Seed for init and data order (default 1)");
  cmd->add_flag("--bf16", o->bf16_final, "Write the final model in bf16 (half the size)");
  cmd->add_flag("-q,--quiet", o->quiet, "No progress output");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] {
    keep_freed_memory();
    const auto r = train::run_training(*o);
    if (!o->quiet) std::fprintf(stderr, "trained to step %lld, loss %.4f\n", (long long)r.steps_done, r.last_loss);
  });

  auto report_dir = std::make_shared<std::string>();
  auto* rep = app.add_subcommand("report", "Render a training run's metrics.jsonl as RUN/report.html (SVG curves)");
  rep->add_option("run", *report_dir, "Run directory (of whale train or whale grpo)")->required();
  rep->callback([report_dir] { run_report(*report_dir); });

  auto tb = std::make_shared<TrainBenchOptions>();
  auto* bench = app.add_subcommand("train-bench", "Time training steps on random tokens (median tokens/s)");
  bench->add_option("--config", tb->config, "Model config.json")->required();
  bench->add_option("--batch", tb->batch, "Sequences per step (default 8)");
  bench->add_option("--seq-len", tb->seq, "Tokens per sequence (default 128)");
  bench->add_option("--steps", tb->steps, "Timed steps after two warm-up steps (default 5)");
  bench->add_option("-t,--threads", tb->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  bench->callback([tb] {
    keep_freed_memory();
    run_train_bench(*tb);
  });

  auto g = std::make_shared<train::GrpoOptions>();
  auto agg = std::make_shared<std::string>("token_mean");
  auto* grpo = app.add_subcommand("grpo", "Reinforcement learning on the reasoning tasks (GRPO, rule-based rewards)");
  grpo->add_option("--init", g->init, "The model to improve (an SFT checkpoint)");
  grpo->add_option("--out", g->out, "Run directory: model/ checkpoint, metrics.jsonl; an existing one resumes")->required();
  grpo->add_option("--tasks", g->tasks, "all, or a list of addition,multiplication,countdown,algebra");
  grpo->add_option("--steps", g->steps, "Policy steps (default 100)");
  grpo->add_option("--prompts", g->prompts, "Prompts per step (default 8)");
  grpo->add_option("--group", g->group, "Samples per prompt G (default 8)");
  grpo->add_option("--max-tokens", g->max_tokens, "Longest sample (default 200)");
  grpo->add_option("--temperature", g->temperature, "Sampling temperature (default 1)");
  grpo->add_option("--thinking", g->thinking, "Fraction of prompts with thinking on (default 0.75)")->check(CLI::Range(0.0, 1.0));
  grpo->add_option("--lr", g->lr, "Peak learning rate (default 2e-5)");
  grpo->add_option("--min-lr", g->min_lr, "Final learning rate (default 2e-6)");
  grpo->add_option("--warmup", g->warmup, "Warmup steps (default 5)");
  grpo->add_option("--clip", g->clip, "Gradient norm clip (default 1)");
  grpo->add_option("--epochs", g->ppo_epochs, "Policy updates per batch of samples (default 1)");
  grpo->add_option("--eps-low", g->loss.eps_low, "Lower clip ε (default 0.2)");
  grpo->add_option("--eps-high", g->loss.eps_high, "Upper clip ε (default 0.28)");
  grpo->add_option("--kl-beta", g->loss.kl_beta, "k3 KL weight to the starting model (default 0)");
  grpo->add_flag("--adv-std-norm", g->loss.adv_std_norm, "Divide advantages by the group's std (original GRPO)");
  grpo->add_option("--loss-agg", *agg, "token_mean (default), seq_mean_token_mean, token_sum_const");
  grpo->add_option("--format-reward", g->format_reward, "Reward for a well-formed reply (default 0.1)");
  grpo->add_option("--save-every", g->save_every, "Checkpoint interval (default 10)");
  grpo->add_option("--seed", g->seed, "Seed (default 1)");
  grpo->add_flag("-q,--quiet", g->quiet, "No progress output");
  grpo->add_option("-t,--threads", g->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  grpo->callback([g, agg] {
    g->loss.agg = train::parse_loss_agg(*agg);
    g->loss.token_sum_const = float(g->max_tokens);
    keep_freed_memory();
    train::run_grpo(*g);
  });

  auto d = std::make_shared<DataOptions>();
  auto* data = app.add_subcommand("data", "Training data");
  data->require_subcommand(1);
  auto* gen = data->add_subcommand("gen", "Write reasoning tasks with step-by-step traces as JSONL");
  gen->add_option("--tasks", d->tasks, "all, or a list of addition,multiplication,countdown,algebra");
  gen->add_option("--split", d->split, "train (default) or test (held out)");
  gen->add_option("--format", d->format, "chat (default: {\"messages\"}, SFT) or text (pretraining)");
  gen->add_option("--count", d->count, "Examples (default 1000)")->check(CLI::NonNegativeNumber);
  gen->add_option("--seed", d->seed, "Seed (default 1)");
  gen->add_option("--thinking", d->thinking, "Fraction of chat examples with thinking on (default 1)")->check(CLI::Range(0.0, 1.0));
  gen->add_option("-o,--out", d->out, "Output file (default stdout)");
  gen->callback([d] { run_data_gen(*d); });

  auto t = std::make_shared<TokTrainOptions>();
  auto* tokc = app.add_subcommand("tokenizer", "Tokenizers");
  tokc->require_subcommand(1);
  auto* tt = tokc->add_subcommand("train", "Learn a byte-level BPE (HF tokenizer.json with DeepSeek's special tokens)");
  tt->add_option("inputs", t->inputs, "Text files, or JSONL datasets (their text and message fields)")->required();
  tt->add_option("-o,--out", t->out, "Output directory")->required();
  tt->add_option("--vocab-size", t->bpe.vocab_size, "Total ids (default 1024)");
  tt->add_option("--min-frequency", t->bpe.min_frequency, "Least count of a merged pair (default 2)");
  tt->add_flag("!--group-digits", t->bpe.split_digits, "Keep DeepSeek's groups of up to 3 digits (default: one digit per token)");
  tt->callback([t] { run_tokenizer_train(*t); });

  auto e = std::make_shared<EvalCliOptions>();
  auto* ev = app.add_subcommand("eval", "Held-out accuracy on the reasoning tasks");
  ev->add_option("--model", e->model, "Model directory (\"default\": the embedded model)")->required();
  ev->add_option("--tasks", e->tasks, "all, or a list of tasks");
  ev->add_option("--thinking", e->thinking, "on, off or both (default)");
  ev->add_option("-n,--count", e->eval.per_task, "Problems per task (default 100)")->check(CLI::PositiveNumber);
  ev->add_option("--seed", e->eval.seed, "Which test problems (default 1234)");
  ev->add_option("--max-tokens", e->eval.max_tokens, "Longest answer (default 256)")->check(CLI::PositiveNumber);
  ev->add_option("--parallel", e->eval.parallel, "Sequences decoded at once (default 16)")->check(CLI::PositiveNumber);
  ev->add_flag("--json", e->json_out, "Print JSON");
  ev->add_option("-t,--threads", e->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  ev->callback([e] { run_eval(*e); });
}

}  // namespace whale
