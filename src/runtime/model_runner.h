// The model runner: executes a step plan on the model.
//
//   draft    (speculation) the MTP module proposes each decoding sequence's drafts, greedily:
//            the first from its output at the last position it read, each further one by
//            running the module on the previous draft with its own output state
//   forward  one batched forward over every chunk: decode chunks [next, drafts...] in the
//            absorbed attention form with a logits row per token (each computed exactly as a
//            one-token decode step), prompt chunks in the MHA form (the same whatever the
//            chunking) with a row for the last token of a completed prompt
//   catch_up (speculation) after the output processor has kept what it accepts, the MTP
//            module reads the new positions from the main model's exact hidden states, which
//            gives the next step's first draft
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/engine_config.h"
#include "runtime/kv_cache.h"
#include "runtime/scheduler.h"

namespace whale {

struct StepResult {
  std::vector<int64_t> first_token;  // [chunk] its first token in the batch (a row of `hidden`)
  std::vector<int64_t> first_row;    // [chunk] its first logits row
  std::vector<int64_t> n_rows;       // [chunk] 0 for a prompt chunk that does not end its prompt
  float* row(int64_t r) { return &logits[size_t(r * vocab)]; }
  std::vector<float> logits;       // [rows, vocab]
  std::vector<float> hidden;       // [tokens, hidden] final hidden states (speculation only)
  int64_t vocab = 0;
  double forward_seconds = 0;
};

class ModelRunner {
 public:
  ModelRunner(Model& model, KVCacheManager& cache, const EngineConfig& config);

  bool drafting() const { return config_.draft > 0; }
  // Proposes drafts and runs the forward pass; the chunks' cache lengths advance.
  StepResult& execute(const StepPlan& plan);
  // The MTP module over the positions the step kept (speculation only).
  void catch_up(const StepPlan& plan);

 private:
  void propose(const StepPlan& plan);

  Model& model_;
  KVCacheManager& cache_;
  const EngineConfig& config_;
  StepResult result_;
  std::vector<int32_t> tokens_;  // scratch: a decode chunk's [next, drafts...]
  std::vector<float> mtp_logits_, mtp_hidden_;
};

}  // namespace whale
