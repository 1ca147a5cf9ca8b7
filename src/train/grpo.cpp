#include "train/grpo.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "model/hf_config.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/evaluate.h"
#include "train/optimizer.h"
#include "train/run_dir.h"
#include "train/train_model.h"
#include "train/tasks.h"

namespace whale::train {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

LossAgg parse_loss_agg(const std::string& name) {
  if (name == "token_mean") return LossAgg::TokenMean;
  if (name == "seq_mean_token_mean") return LossAgg::SeqMeanTokenMean;
  if (name == "token_sum_const") return LossAgg::TokenSumConst;
  fail("unknown loss aggregation '", name, "' (token_mean, seq_mean_token_mean, token_sum_const)");
}

std::vector<float> group_advantages(const std::vector<float>& rewards, int64_t G, bool std_norm,
                                    std::vector<bool>& keep) {
  if (G < 1 || rewards.size() % size_t(G) != 0) fail("GRPO: ", rewards.size(), " rewards are not groups of ", G);
  std::vector<float> adv(rewards.size(), 0.0f);
  keep.assign(rewards.size() / size_t(G), false);
  for (size_t g = 0; g < keep.size(); ++g) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < G; ++i) mean += rewards[g * size_t(G) + size_t(i)];
    mean /= double(G);
    for (int64_t i = 0; i < G; ++i) var += std::pow(rewards[g * size_t(G) + size_t(i)] - mean, 2);
    // torch.std (unbiased), as the GRPO reference implementations use
    const double sd = G > 1 ? std::sqrt(var / double(G - 1)) : 0.0;
    keep[g] = var > 0;
    for (int64_t i = 0; i < G; ++i) {
      double a = rewards[g * size_t(G) + size_t(i)] - mean;
      if (std_norm) a /= sd + 1e-4;
      adv[g * size_t(G) + size_t(i)] = keep[g] ? float(a) : 0.0f;
    }
  }
  return adv;
}

GrpoLossStats grpo_loss(const std::vector<float>& logp, const std::vector<float>& old_logp,
                        const std::vector<float>* ref_logp, const std::vector<float>& mask,
                        const std::vector<float>& adv, int64_t B, int64_t T, const GrpoLossOptions& o,
                        std::vector<float>& dlogp) {
  const size_t n = size_t(B * T);
  if (logp.size() != n || old_logp.size() != n || mask.size() != n || adv.size() != size_t(B) ||
      (ref_logp && ref_logp->size() != n) || (o.kl_beta != 0 && !ref_logp))
    fail("GRPO loss: inconsistent shapes");
  dlogp.assign(n, 0.0f);
  GrpoLossStats st;
  double total_tokens = 0;
  std::vector<double> row_tokens(size_t(B), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) row_tokens[size_t(b)] += mask[size_t(b * T + t)];
  for (double r : row_tokens) total_tokens += r;
  st.tokens = total_tokens;
  if (total_tokens == 0) return st;
  double clipped = 0, kl = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (row_tokens[size_t(b)] == 0) continue;
    // The weight of one token's term in the aggregated loss.
    double w = 0;
    switch (o.agg) {
      case LossAgg::TokenMean: w = 1.0 / total_tokens; break;
      case LossAgg::SeqMeanTokenMean: w = 1.0 / (double(B) * row_tokens[size_t(b)]); break;
      case LossAgg::TokenSumConst: w = 1.0 / (double(B) * double(o.token_sum_const)); break;
    }
    const double A = adv[size_t(b)];
    for (int64_t t = 0; t < T; ++t) {
      const size_t i = size_t(b * T + t);
      if (mask[i] == 0) continue;
      const double m = mask[i];
      const double rho = std::exp(double(logp[i]) - double(old_logp[i]));
      const double unclipped = rho * A;
      const double clipped_rho = std::min(std::max(rho, 1.0 - o.eps_low), 1.0 + o.eps_high);
      const double surrogate = std::min(unclipped, clipped_rho * A);
      double term = -surrogate, grad = 0;
      if (unclipped <= clipped_rho * A) {
        grad = -unclipped;  // d(-ρA)/dlogp = -ρA
      } else {
        clipped += m;  // the clipped branch is constant in θ
      }
      if (o.kl_beta != 0) {
        const double d = double((*ref_logp)[i]) - double(logp[i]);  // log(π_ref/π_θ)
        const double k3 = std::exp(d) - d - 1.0;
        term += o.kl_beta * k3;
        grad += o.kl_beta * (1.0 - std::exp(d));
        kl += m * k3;
      }
      st.loss += w * m * term;
      dlogp[i] = float(w * m * grad);
    }
  }
  st.clip_frac = clipped / total_tokens;
  st.kl = kl / total_tokens;
  return st;
}

namespace {

struct Rollout {
  Problem problem;
  bool thinking = false;
  std::vector<int32_t> prompt, completion;
  float reward = 0;
  bool correct = false;
};

}  // namespace

void run_grpo(const GrpoOptions& o) {
  if (o.out.empty()) fail("grpo: --out (the run directory) is required");
  if (o.group < 2) fail("grpo: --group must be at least 2 (advantages compare samples of one prompt)");
  if (o.prompts < 1 || o.steps < 1 || o.max_tokens < 1 || o.ppo_epochs < 1 || o.save_every < 1)
    fail("grpo: prompts, steps, max-tokens, epochs and save-every must be at least 1");
  const std::vector<Task> tasks = parse_task_list(o.tasks);
  RunDir run(o.out);
  const json options = {{"--seed", o.seed},         {"--tasks", o.tasks},         {"--prompts", o.prompts},
                        {"--group", o.group},       {"--max-tokens", o.max_tokens}, {"--temperature", o.temperature},
                        {"--thinking", o.thinking}, {"--format-reward", o.format_reward}, {"--lr", o.lr},
                        {"--min-lr", o.min_lr},     {"--warmup", o.warmup},       {"--clip", o.clip},
                        {"--epochs", o.ppo_epochs}, {"--eps-low", o.loss.eps_low}, {"--eps-high", o.loss.eps_high},
                        {"--kl-beta", o.loss.kl_beta}, {"--adv-std-norm", o.loss.adv_std_norm},
                        {"--loss-agg", int(o.loss.agg)}, {"--bias-gamma", o.bias_gamma},
                        {"--balance-alpha", o.balance_alpha}};
  run.check_options(options);
  const fs::path runp(run.path());
  const std::string resume = run.has_checkpoint() ? run.checkpoint() : "";
  if (resume.empty() && o.init.empty()) fail("grpo: --init (the model to improve) is required");
  const fs::path src = resume.empty() ? fs::path(o.init) : fs::path(resume);
  const std::string config_json = read_text_file((src / "config.json").string());
  const ModelConfig cfg = parse_hf_config(config_json, (src / "config.json").string());
  auto tok = Tokenizer::load(src.string());
  std::map<std::string, std::string> tok_files;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (fs::exists(src / f)) tok_files[f] = read_text_file((src / f).string());

  ThreadPool pool(o.threads);
  TrainModel m(cfg, pool);
  m.load_weights(src.string());
  AdamW opt(m, AdamWConfig{0.9f, 0.95f, 1e-8f, o.weight_decay});
  int64_t step = 0;
  if (!resume.empty()) {
    step = run.step();
    load_optimizer(opt, (src / "optimizer.bin").string());
    if (!o.quiet) std::fprintf(stderr, "resuming %s at step %lld\n", src.string().c_str(), (long long)step);
  }
  // The reference policy for the KL term: the starting model (kept in the run directory so a
  // resumed run compares against the same one).
  std::unique_ptr<TrainModel> ref;
  if (o.loss.kl_beta != 0) {
    const fs::path ref_dir = runp / "reference";
    if (!fs::exists(ref_dir / "model.safetensors")) save_model(m, config_json, ref_dir.string(), false, tok_files);
    ref = std::make_unique<TrainModel>(cfg, pool);
    ref->load_weights(ref_dir.string());
  }
  const LrSchedule sched{o.lr, o.min_lr, o.warmup, o.steps};
  auto save = [&](int64_t at) {
    run.save(at, options, {{"steps", o.steps}, {"init", o.init}, {"stage", "grpo"}}, [&](const std::string& dir) {
      auto files = tok_files;
      files["optimizer.bin"] = optimizer_bytes(opt);
      write_model_files(m, config_json, dir, false, files);
    });
  };

  const bool tty = isatty(2);
  for (; step < o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    // 1. Rollouts: G samples for each of P prompts from the current policy (the engine reads
    // the training weights in place; they do not change until the update below).
    std::vector<Rollout> rollouts;
    {
      auto policy = inference_model(m, pool);
      EngineConfig ec_cfg;
      ec_cfg.parallel = o.prompts * o.group;
      ec_cfg.ctx = 256 + o.max_tokens;
      Engine engine(*policy, *tok, ec_cfg);
      std::mt19937_64 rng(o.seed * 0x9e3779b97f4a7c15ull + uint64_t(step));
      std::vector<std::shared_ptr<RequestHandle>> handles;
      for (int64_t p = 0; p < o.prompts; ++p) {
        const int64_t index = step * o.prompts + p;
        const Task task = tasks[size_t(index) % tasks.size()];
        const Problem problem = make_problem(task, Split::Train, o.seed + 7919, index / int64_t(tasks.size()));
        const bool thinking = std::uniform_real_distribution<float>(0, 1)(rng) < o.thinking;
        const std::vector<int32_t> prompt = tok->encode(chat_prompt(problem.question, thinking));
        if (int64_t(prompt.size()) > 256) fail("grpo: a prompt of ", prompt.size(), " tokens is too long");
        for (int64_t g = 0; g < o.group; ++g) {
          EngineRequest r;
          r.prompt = prompt;
          r.options.max_tokens = o.max_tokens;
          r.options.sampling.temperature = o.temperature;
          r.options.sampling.seed = rng();
          r.options.starts_in_reasoning = thinking;
          r.options.tool_syntax = ToolCallSyntax::V31;
          handles.push_back(engine.submit(std::move(r)));
          rollouts.push_back(Rollout{problem, thinking, prompt, {}, 0, false});
        }
      }
      for (size_t i = 0; i < handles.size(); ++i) {
        const RequestOutput result = handles[i]->wait_finished();
        if (!result.error.empty()) fail("grpo: sampling failed: ", result.error);
        Rollout& r = rollouts[i];
        r.completion = result.tokens;
        r.correct = check_answer(r.problem, result.result.content);
        const bool ended = result.stats.finish_reason == "stop";
        const bool formatted = ended && !result.result.content.empty() &&
                               (!r.thinking || !result.result.reasoning.empty());
        r.reward = (r.correct ? 1.0f : 0.0f) + (formatted ? o.format_reward : 0.0f);
      }
    }
    const double sample_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // 2. Advantages; groups with one reward for all samples drop out.
    std::vector<float> rewards;
    for (const Rollout& r : rollouts) rewards.push_back(r.reward);
    std::vector<bool> keep;
    const std::vector<float> adv_all = group_advantages(rewards, o.group, o.loss.adv_std_norm, keep);
    std::vector<size_t> rows;
    for (size_t i = 0; i < rollouts.size(); ++i)
      if (keep[i / size_t(o.group)] && !rollouts[i].completion.empty()) rows.push_back(i);

    double reward_mean = 0, acc = 0, len = 0;
    for (const Rollout& r : rollouts) reward_mean += r.reward, acc += r.correct, len += double(r.completion.size());
    reward_mean /= double(rollouts.size());
    acc /= double(rollouts.size());
    len /= double(rollouts.size());
    int64_t kept_groups = 0;
    for (bool k : keep) kept_groups += k;

    // 3. Policy update on the kept rollouts: prompt + completion, loss on the completion.
    GrpoLossStats ls;
    double gnorm = 0, maxvio = 0;
    const float lr = sched.at(step);
    if (!rows.empty()) {
      TrainBatch b;
      b.B = int64_t(rows.size());
      for (size_t i : rows) b.T = std::max<int64_t>(b.T, int64_t(rollouts[i].prompt.size() + rollouts[i].completion.size()));
      b.tokens.assign(size_t(b.B * b.T), tok->token_id("<｜▁pad▁｜>") >= 0 ? tok->token_id("<｜▁pad▁｜>") : 0);
      b.weight.assign(size_t(b.B * b.T), 0.0f);
      std::vector<float> adv;
      for (size_t r = 0; r < rows.size(); ++r) {
        const Rollout& ro = rollouts[rows[r]];
        const size_t base = r * size_t(b.T);
        std::copy(ro.prompt.begin(), ro.prompt.end(), b.tokens.begin() + long(base));
        std::copy(ro.completion.begin(), ro.completion.end(), b.tokens.begin() + long(base + ro.prompt.size()));
        for (size_t t = 0; t < ro.completion.size(); ++t) b.weight[base + ro.prompt.size() + t] = 1.0f;
        adv.push_back(adv_all[rows[r]]);
      }
      std::vector<float> logp, old_logp, ref_logp, dlogp;
      std::vector<std::vector<float>> mtp, none;
      std::vector<float>* refp = nullptr;
      if (ref) {
        ref->forward(b, ref_logp, mtp);
        refp = &ref_logp;
      }
      for (int64_t epoch = 0; epoch < o.ppo_epochs; ++epoch) {
        m.zero_grads();
        m.forward(b, logp, mtp);
        if (epoch == 0) old_logp = logp;  // the samples came from these weights
        ls = grpo_loss(logp, old_logp, refp, b.weight, adv, b.B, b.T, o.loss, dlogp);
        m.backward(dlogp, none, o.balance_alpha);
        gnorm = clip_grad_norm(m.grads(), o.clip);
        if (!std::isfinite(ls.loss) || !std::isfinite(gnorm))
          fail("grpo: the loss diverged at step ", step + 1, "; the last good checkpoint is in ", run.checkpoint());
        opt.step(m, lr, pool);
      }
      maxvio = m.update_router_bias(o.bias_gamma);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    json line = {{"step", step + 1},        {"reward", reward_mean}, {"accuracy", acc},
                 {"kept_groups", kept_groups}, {"groups", int64_t(keep.size())}, {"loss", ls.loss},
                 {"kl", ls.kl},             {"clip_frac", ls.clip_frac}, {"grad_norm", gnorm},
                 {"lr", lr},                {"mean_len", len},       {"maxvio", maxvio},
                 {"sample_s", sample_secs}, {"step_s", secs}};
    run.log(line);
    if (!o.quiet)
      std::fprintf(stderr, "%sgrpo step %lld/%lld  reward %.3f  acc %.3f  groups %lld/%lld  len %.0f  kl %.4f  %.1fs%s",
                   tty ? "\r" : "", (long long)(step + 1), (long long)o.steps, reward_mean, acc,
                   (long long)kept_groups, (long long)keep.size(), len, ls.kl, secs, tty ? "   " : "\n");
    if ((step + 1) % o.save_every == 0 || step + 1 == o.steps) save(step + 1);
  }
  if (!o.quiet && tty) std::fprintf(stderr, "\n");
}

}  // namespace whale::train
