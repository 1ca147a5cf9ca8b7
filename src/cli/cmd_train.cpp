// whale train: train a model (pretraining on text, SFT on chat examples); train/trainer.h.
#include <malloc.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "train/trainer.h"

namespace whale {

// A training step allocates and frees the same activation buffers every time. glibc would hand
// large ones back to the kernel (mmap/trim) and fault in fresh zeroed pages on the next step
// (a tenth of a step's time in page clearing); keeping freed memory in the heap reuses them.
void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}


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
}

}  // namespace whale
