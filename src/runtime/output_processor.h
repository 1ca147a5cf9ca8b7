// The output processor: turns a step's logits into tokens and the tokens into client output.
//
// Each sequence's first row is chosen by its decode state (in parallel: over a ~100K
// vocabulary this costs about as much as a small model's forward step). With speculation a
// decode chunk has a row per fed token; the acceptance rule is exact match: row j+1 was
// computed after draft j, so it counts only while the token chosen from row j (by the same
// decode state, exactly as plain decoding would choose it: sampler, seed, penalties,
// constraints) equals draft j. The output is therefore plain decoding's, token for token,
// seeded sampling included; only the number of steps changes. The cache entries of refused
// drafts are truncated.
#pragma once
#include "core/thread_pool.h"
#include "runtime/decode_state.h"
#include "runtime/kv_cache.h"
#include "runtime/metrics.h"
#include "runtime/model_runner.h"
#include "runtime/scheduler.h"

namespace whale {

// Output on its way to a client: handed over after the step's metrics are applied, so a
// client that sees its request finished also sees it counted.
struct Delivery {
  std::shared_ptr<RequestHandle> handle;
  RequestOutput output;
};

class OutputProcessor {
 public:
  OutputProcessor(KVCacheManager& cache, ThreadPool& pool) : cache_(cache), pool_(pool) {}

  // Chooses and accepts every chunk's tokens.
  void process(const StepPlan& plan, StepResult& result, StepStats& stats);
  // A sequence's output since the last collect (with its timings once it finished).
  void collect(Sequence& s, StepStats& stats, std::vector<Delivery>& out);

 private:
  bool accept(Sequence& s, int32_t token, const float* logits, StepStats& stats);

  KVCacheManager& cache_;
  ThreadPool& pool_;
  std::vector<int32_t> chosen_;
};

}  // namespace whale
