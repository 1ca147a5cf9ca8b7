// whale grpo: reinforcement learning on the reasoning tasks; train/grpo.h.
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "train/grpo.h"

namespace whale {
void register_grpo(CLI::App& app) {
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
}

}  // namespace whale
