// One request inside the engine: what the scheduler, the model runner and the output
// processor each keep about it. Owned by the scheduler; the others see it during a step.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/kv_pool.h"
#include "runtime/decode_state.h"
#include "runtime/kv_store.h"
#include "runtime/request.h"

namespace whale {

using Clock = std::chrono::steady_clock;

struct Sequence {
  Sequence(EngineRequest r, const DecodeVocab& vocab, int64_t max_new)
      : req(std::move(r)), handle(std::make_shared<RequestHandle>()), decode(req, vocab, max_new) {}
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  EngineRequest req;  // before `decode`, which refers to it
  std::shared_ptr<RequestHandle> handle;
  DecodeState decode;

  // Scheduler: the block table (KVCacheManager), the prompt tokens already in it, and the
  // blocks this sequence may hold in all (its worst case, reserved at admission).
  SeqCache cache;
  int64_t prefilled = 0;
  int64_t reserved = 0;
  std::shared_ptr<LoadJob> load;  // blocks coming from the KV store; the sequence waits for them
  bool prefetched = false;        // its blocks on disk were asked into RAM while it queued

  // Output processor -> runner: the token to feed at the next step (the last one chosen).
  int32_t next = -1;

  // Runner, MTP drafting: `mtp` views the blocks of `cache` with the module's own length (the
  // positions it has read, equal to cache.length between steps); its output at the last of
  // them (draft_logits [V], draft_hidden [D]) drafts the next step's tokens.
  SeqCache mtp;
  std::vector<float> draft_logits, draft_hidden;
  std::vector<int32_t> drafts;  // this step's proposals

  Clock::time_point submitted = Clock::now(), admitted, first_token, last_token;

  int64_t prompt_size() const { return int64_t(req.prompt.size()); }
  bool decoding() const { return prefilled == prompt_size(); }
  bool loading() const { return load != nullptr; }
  int32_t token_at(int64_t pos) const {  // the sequence's token at a position (prompt, then output)
    return pos < prompt_size() ? req.prompt[size_t(pos)] : decode.output()[size_t(pos - prompt_size())];
  }
};

}  // namespace whale
