// The scheduler: which sequences run, and what each does in the next step.
//
// Admission: the head of the waiting queue starts when the blocks for its worst case
// (prompt + max_tokens, less what the prefix cache already holds) can be had, so a running
// sequence never runs out of cache memory and the rest wait in order. Prompt blocks that only
// the KV store's RAM or disk tier holds are loaded into the pool on admission; the sequence
// waits for them (loading) while the others keep running, and blocks that fail to load are
// computed like any other. Queued sequences have their disk blocks prefetched into RAM.
// Planning: every decoding sequence feeds its last token (plus the drafts the runner will
// propose, with speculation), then prompt chunks of sequences still prefilling share what is
// left of the step's token budget (chunked prefill), so a long prompt never stalls the
// streams already running. Blocks for the planned tokens are reserved before the step.
// Retiring: a finished sequence's whole blocks are offered to the prefix cache (prompt and
// output, so the next turn of a conversation finds its history), then released.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "runtime/engine_config.h"
#include "runtime/kv_cache.h"
#include "runtime/sequence.h"

namespace whale {

// One sequence's work in a step.
struct PlannedChunk {
  Sequence* seq;
  int64_t n_tokens;     // decode: 1 + drafts; prompt: the chunk's length
  int64_t drafts = 0;   // decode: draft tokens the runner proposes after seq->next
  bool decode = false;  // generated tokens (absorbed attention, a logits row each) or a prompt chunk
  bool ends_prompt = false;  // a prompt chunk that completes the prompt: one logits row
};

struct StepPlan {
  std::vector<PlannedChunk> chunks;  // decoding sequences first, then prompt chunks
  int64_t decode_tokens = 0, prompt_tokens = 0;
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  // `wake` is called (from the store's thread) when a load finishes.
  Scheduler(const EngineConfig& config, KVCacheManager& cache, bool drafting, std::function<void()> wake = nullptr);

  void add(std::unique_ptr<Sequence> s);  // joins the waiting queue
  // Admits waiting sequences in order while their worst case fits. Cancelled waiting
  // sequences are finished ("cancelled") and left for retire().
  void admit();
  StepPlan schedule();
  // After a step ran: prompts that completed go to the prefix cache.
  void after_step(const StepPlan& plan);
  // Finished sequences (running or waiting) leave; their blocks are released.
  std::vector<std::unique_ptr<Sequence>> retire();
  std::vector<Sequence*> all();                // running and waiting (engine shutdown)
  std::vector<Sequence*> running_sequences();  // (a failed step)
  const std::vector<std::unique_ptr<Sequence>>& running() const { return running_; }
  int64_t n_waiting() const { return int64_t(waiting_.size()); }
  int64_t n_running() const { return int64_t(running_.size()); }

 private:
  int64_t outstanding_blocks() const;  // reserved but not yet allocated, over running sequences
  void release(Sequence& s);
  void finish_load(Sequence& s);

  const EngineConfig& config_;
  KVCacheManager& cache_;
  bool drafting_;
  std::function<void()> wake_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
};

}  // namespace whale
