#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "model/hf_config.h"
#include "train/dataset.h"
#include "train/optimizer.h"
#include "train/run_dir.h"

namespace whale::train {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

std::string read_text_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(p, ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
constexpr char kOptMagic[8] = {'W', 'H', 'A', 'D', 'A', 'M', 'W', '1'};

}  // namespace

std::string optimizer_bytes(AdamW& opt) {
  std::string s(kOptMagic, 8);
  const int64_t n = int64_t(opt.m().size()), t = opt.steps();
  s.append(reinterpret_cast<const char*>(&n), 8);
  s.append(reinterpret_cast<const char*>(&t), 8);
  s.append(reinterpret_cast<const char*>(opt.m().data()), opt.m().size() * 4);
  s.append(reinterpret_cast<const char*>(opt.v().data()), opt.v().size() * 4);
  return s;
}

void load_optimizer(AdamW& opt, const std::string& p) {
  const std::string s = read_text_file(p);
  const size_t n = opt.m().size();
  int64_t stored = -1, t = 0;
  if (s.size() >= 24) {
    std::memcpy(&stored, s.data() + 8, 8);
    std::memcpy(&t, s.data() + 16, 8);
  }
  if (s.size() < 24 || std::memcmp(s.data(), kOptMagic, 8) != 0 || stored != int64_t(n) || s.size() != 24 + 8 * n)
    fail(p, ": not the optimizer state of this model (", s.size(), " bytes)");
  std::memcpy(opt.m().data(), s.data() + 24, 4 * n);
  std::memcpy(opt.v().data(), s.data() + 24 + 4 * n, 4 * n);
  opt.set_steps(t);
}

TrainResult run_training(const TrainOptions& o) {
  if (o.out.empty()) fail("train: --out (the run directory) is required");
  if (o.data.empty()) fail("train: --data is required");
  if (o.steps < 1 || o.batch < 1 || o.accum < 1 || o.save_every < 1 || o.log_every < 1)
    fail("train: steps, batch, accum, save-every and log-every must be at least 1");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail("train: --lr must be a positive number");
  RunDir run(o.out);
  // What the run is: resuming with different values would silently make another run.
  // (--steps may grow: the schedule then continues as if planned with the new length.)
  const json options = {{"--seed", o.seed},         {"--batch", o.batch},           {"--accum", o.accum},
                        {"--seq-len", o.seq_len},   {"--lr", o.lr},                 {"--min-lr", o.min_lr},
                        {"--warmup", o.warmup},     {"--clip", o.clip},             {"--weight-decay", o.weight_decay},
                        {"--mtp-lambda", o.loss.mtp_lambda}, {"--balance-alpha", o.loss.balance_alpha},
                        {"--bias-gamma", o.bias_gamma}, {"--data", o.data}};
  run.check_options(options);

  // Model config and starting weights: a checkpoint in the run directory wins (resume).
  const fs::path resume = run.has_checkpoint() ? fs::path(run.checkpoint()) : fs::path();
  fs::path cfg_path, tok_dir;
  if (!resume.empty()) {
    cfg_path = resume / "config.json";
    tok_dir = resume;
  } else if (!o.init.empty()) {
    cfg_path = fs::path(o.init) / "config.json";
    tok_dir = o.tokenizer.empty() ? fs::path(o.init) : fs::path(o.tokenizer);
  } else {
    if (o.config.empty()) fail("train: give --config (a fresh model) or --init (a model directory)");
    cfg_path = o.config;
    if (o.tokenizer.empty()) fail("train: --tokenizer is required for a fresh model");
    tok_dir = o.tokenizer;
  }
  const std::string config_json = read_text_file(cfg_path.string());
  const ModelConfig cfg = parse_hf_config(config_json, cfg_path.string());
  auto tok = Tokenizer::load(tok_dir.string());
  if (tok->vocab_size() > cfg.vocab_size)
    fail(cfg_path.string(), ": vocab_size ", cfg.vocab_size, " is smaller than the tokenizer's ", tok->vocab_size(),
         " ids (", tok->source(), ")");
  std::map<std::string, std::string> tok_files;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (fs::exists(tok_dir / f)) tok_files[f] = read_text_file((tok_dir / f).string());

  Dataset data(o.data, *tok, o.seq_len);
  const DatasetStats& ds = data.stats();
  if (!o.quiet) {
    std::fprintf(stderr, "data: %lld examples, %lld tokens (%lld lines, %lld malformed skipped, %lld truncated to %lld)\n",
                 (long long)ds.examples, (long long)ds.tokens, (long long)ds.lines, (long long)ds.skipped,
                 (long long)ds.truncated, (long long)o.seq_len);
    for (const std::string& e : ds.errors) std::fprintf(stderr, "data: skipped %s\n", e.c_str());
  }

  ThreadPool pool(o.threads);
  TrainModel m(cfg, pool);
  AdamW opt(m, AdamWConfig{o.beta1, o.beta2, o.adam_eps, o.weight_decay});
  int64_t step = 0;
  if (!resume.empty()) {
    m.load_weights(resume.string());
    step = run.step();
    load_optimizer(opt, (resume / "optimizer.bin").string());
    if (!o.quiet) std::fprintf(stderr, "resuming %s at step %lld\n", resume.string().c_str(), (long long)step);
  } else if (!o.init.empty()) {
    m.load_weights(o.init);
  } else {
    m.init_random(o.seed);
  }
  const LrSchedule sched{o.lr, o.min_lr, o.warmup, o.steps};

  // A bf16 model/ keeps the float32 master weights in master/, so the run can go on exactly.
  auto save = [&](int64_t at, bool final_save) {
    const bool bf16 = final_save && o.bf16_final;
    run.save(at, options, {{"steps", o.steps}, {"stage", "train"}}, [&](const std::string& dir) {
      auto files = tok_files;
      files["optimizer.bin"] = optimizer_bytes(opt);
      write_model_files(m, config_json, dir, bf16, files);
      if (bf16) write_model_files(m, config_json, dir + "/master", false);
    });
  };

  const bool tty = isatty(2);
  TrainResult res;
  double tokens_window = 0, loss_window = 0;
  int64_t window_steps = 0;
  auto window_start = std::chrono::steady_clock::now();
  int64_t last_saved = step;
  const int64_t end = o.stop_at > 0 ? std::min(o.stop_at, o.steps) : o.steps;
  for (; step < end; ++step) {
    m.zero_grads();
    LossValue lv;
    double tokens = 0;
    for (int64_t a = 0; a < o.accum; ++a) {
      const TrainBatch b = data.batch(o.seed, step * o.accum + a, o.batch);
      const LossValue v = cross_entropy_step(m, b, o.loss, 1.0f / float(o.accum));
      lv.total += v.total / double(o.accum);
      lv.main += v.main / double(o.accum);
      lv.mtp += v.mtp / double(o.accum);
      lv.balance += v.balance / double(o.accum);
      tokens += double(b.B * b.T);
    }
    const double gnorm = clip_grad_norm(m.grads(), o.clip);
    if (!std::isfinite(lv.total) || !std::isfinite(gnorm))
      fail("train: the loss diverged at step ", step + 1, " (loss ", lv.total, ", gradient norm ", gnorm,
           "); the last good checkpoint (step ", last_saved, ") is in ", run.checkpoint(),
           "; try a lower --lr or a longer --warmup");
    const float lr = sched.at(step);
    opt.step(m, lr, pool);
    const double maxvio = m.update_router_bias(o.bias_gamma);
    tokens_window += tokens;
    loss_window += lv.main;
    ++window_steps;
    const bool last = step + 1 == end;
    if ((step + 1) % o.log_every == 0 || last) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const double tps = tokens_window / std::max(secs, 1e-9);
      json line = {{"step", step + 1}, {"loss", lv.total}, {"main", lv.main}, {"mtp", lv.mtp},
                   {"balance", lv.balance}, {"grad_norm", gnorm}, {"lr", lr}, {"maxvio", maxvio},
                   {"tokens_per_s", tps}, {"mean_loss", loss_window / double(window_steps)}};
      run.log(line);
      if (!o.quiet) {
        const int width = 24, filled = int(width * double(step + 1) / double(o.steps));
        std::fprintf(stderr, "%s[%s%s] step %lld/%lld  loss %.4f (mtp %.4f)  lr %.2e  |g| %.3f  maxvio %.2f  %.0f tok/s%s",
                     tty ? "\r" : "", std::string(size_t(filled), '#').c_str(),
                     std::string(size_t(width - filled), '.').c_str(), (long long)(step + 1), (long long)o.steps,
                     lv.main, lv.mtp, lr, gnorm, maxvio, tps, tty ? "   " : "\n");
      }
      res.tokens_per_s = tps;
      tokens_window = loss_window = 0;
      window_steps = 0;
      window_start = std::chrono::steady_clock::now();
    }
    res.last_loss = lv.main;
    if ((step + 1) % o.save_every == 0 && !last) {
      save(step + 1, false);
      last_saved = step + 1;
    }
  }
  save(step, step == o.steps);
  if (!o.quiet && tty) std::fprintf(stderr, "\n");
  res.steps_done = step;
  return res;
}

}  // namespace whale::train
