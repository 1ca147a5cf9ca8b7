// The training loop behind `whale train`: batches from a Dataset, the cross-entropy objective
// (MTP and balance terms included), gradient accumulation, clipping, AdamW with warmup+cosine,
// the auxiliary-loss-free router-bias update, checkpoints and exact resume.
//
// The run directory (train/run_dir.h) holds the newest checkpoint and metrics.jsonl.
// Starting again on the same run directory resumes from model/ at its step with the same
// data order, so an interrupted run (any kill at any moment, saves included) loses at most
// one save interval, and a resumed run is bit-identical to an uninterrupted one with the
// same thread count. Resuming with options that change the run's meaning is refused.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/objective.h"

namespace whale::train {

struct TrainOptions {
  std::string config;     // model config.json for a fresh model (random init)
  std::string init;       // or: start from this model directory's weights (its config too)
  std::string tokenizer;  // directory with tokenizer.json/tokenizer_config.json (default: init's)
  std::vector<std::string> data;
  std::string out;  // run directory
  int64_t stop_at = 0;  // > 0: end this invocation at this step (with a checkpoint); the schedule still spans `steps`
  int64_t steps = 1000, batch = 16, seq_len = 512, accum = 1, warmup = 50, save_every = 100, log_every = 10;
  float lr = 1e-3f, min_lr = 1e-4f, clip = 1.0f, weight_decay = 0.1f, beta1 = 0.9f, beta2 = 0.95f, adam_eps = 1e-8f;
  float bias_gamma = 1e-3f;  // router correction-bias speed
  LossOptions loss;
  uint64_t seed = 1;
  int threads = 0;
  bool bf16_final = false;  // write the final model/ in bf16 (float32 master weights kept in model/master/)
  bool quiet = false;
};

struct TrainResult {
  int64_t steps_done = 0;
  double last_loss = 0, tokens_per_s = 0;
};

TrainResult run_training(const TrainOptions& o);

// Checkpoint helpers shared with GRPO (train/grpo.h).
class AdamW;
std::string optimizer_bytes(AdamW& opt);                        // AdamW moments and step
void load_optimizer(AdamW& opt, const std::string& path);       // checks it fits the model
std::string read_text_file(const std::string& path);

}  // namespace whale::train
