// whale train-bench: time training steps on random tokens.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "model/hf_config.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/train_model.h"
#include "train/trainer.h"

namespace whale {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

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

}  // namespace

void register_train_bench(CLI::App& app) {
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
}

}  // namespace whale
