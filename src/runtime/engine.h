// The engine: one generation core for every command (serve, run, generate, bench, eval,
// GRPO rollouts). Requests are submitted from any thread and run on the engine's own thread,
// one step at a time:
//
//   Scheduler        admits requests, plans the step (which tokens of which sequences),
//                    reserves their KV blocks                               scheduler.h
//   ModelRunner      executes the plan: MTP drafts, one batched forward     model_runner.h
//   OutputProcessor  chooses and accepts tokens (DecodeState per request),
//                    hands output to the clients                            output_processor.h
//   KVCacheManager   the blocks behind all of it (prefix cache included)    kv_cache.h
//
// Each step's counters are gathered in a StepStats value and applied to the metrics once.
// Results do not depend on what else runs: each token's computation in a batch is
// independent of the other sequences, and a prefix-cache hit reuses exactly the cache
// entries a miss would compute (tested bit for bit). docs/runtime.md has the whole picture.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "model/model.h"
#include "runtime/decode_state.h"
#include "runtime/engine_config.h"
#include "runtime/kv_cache.h"
#include "runtime/metrics.h"
#include "runtime/model_runner.h"
#include "runtime/output_processor.h"
#include "runtime/request.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace whale {

class Engine {
 public:
  // `tokenizer` may be null: requests are then token ids only (no text, stop strings, JSON
  // mode or output parsing). Throws Error for a configuration that cannot run.
  Engine(Model& model, const Tokenizer* tokenizer, EngineConfig config);
  Engine(Model& model, const Tokenizer& tokenizer, EngineConfig config) : Engine(model, &tokenizer, std::move(config)) {}
  ~Engine();  // stops the engine thread; unfinished requests end as "cancelled"

  // Queues a request. Throws Error for a request that can never run (empty, too long for
  // the context, token ids out of range, options the vocabulary cannot serve).
  std::shared_ptr<RequestHandle> submit(EngineRequest request);
  // Submits and waits for the whole output.
  RequestOutput run(EngineRequest request);

  // Ends every queued and running request as "cancelled" (their clients get what was generated
  // so far); for a server that must stop. Any thread.
  void cancel_all();

  EngineMetrics metrics() const;
  KVStoreStats store_stats() const;  // the lower tiers' counters (all zero without a store)
  // Tokens at the start of `tokens` (whole blocks) that the KV store's RAM and disk tiers hold:
  // what a request with this prefix would load instead of computing. Any thread.
  int64_t stored_prefix_tokens(std::span<const int32_t> tokens) const;
  const EngineConfig& config() const { return config_; }
  const Model& model() const { return model_; }
  const Tokenizer* tokenizer() const { return vocab_.tokenizer; }

 private:
  void loop();
  bool step();  // false when there was nothing to do
  // Finished sequences leave; the step's metrics are applied, then output reaches the clients.
  void retire(StepStats& stats, std::vector<Delivery>& deliveries);
  void fail_all(const std::vector<Sequence*>& seqs, const std::string& reason, const std::string& error);
  void wake();  // a load finished (store thread)

  Model& model_;
  EngineConfig config_;
  DecodeVocab vocab_;
  // The store's loader wakes the engine through this (declared before scheduler_, which holds
  // it); the destructor unhooks it first, so a load finishing late never reaches a dead engine.
  struct Waker {
    std::mutex mu;
    Engine* engine = nullptr;
  };
  std::shared_ptr<Waker> waker_ = std::make_shared<Waker>();
  std::unique_ptr<KVCacheManager> cache_;
  Scheduler scheduler_;
  ModelRunner runner_;
  OutputProcessor output_;

  mutable std::mutex mu_;  // guards submitted_, metrics_, stop_
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> submitted_;
  EngineMetrics metrics_;
  bool stop_ = false, woken_ = false;
  std::atomic<bool> cancel_all_{false};  // cancel_all() asked; the engine thread does it
  std::thread thread_;
};

}  // namespace whale
