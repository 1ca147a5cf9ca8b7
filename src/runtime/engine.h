// The serving engine: continuous batching over one model.
//
// Requests are submitted from any thread and run on the engine's own thread. Every step
// builds one Batch: one token for each sequence that is decoding, plus prompt chunks of
// sequences still prefilling (chunked prefill, bounded by `step_tokens`), so a long prompt
// never stalls the streams already running. The latent KV cache is a pool of fixed-size
// blocks; a request is admitted only when the blocks for its worst case (prompt +
// max_tokens) are free or can be freed, so a running request never runs out of memory and
// the rest wait in the queue. Whole prompt blocks go into a prefix cache shared by all
// requests (LRU-evicted when memory is needed).
//
// Results do not depend on what else runs: each token's computation in a batch is
// independent of the other sequences, and a prefix-cache hit reuses exactly the latents a
// miss would compute (tested bit for bit).
//
// MTP speculation (EngineConfig::draft = k > 0, models with an MTP module): each decoding
// sequence feeds [its next token, k drafts of the MTP module] to the step and keeps the
// tokens it would have produced anyway. Every row is chosen exactly as plain decoding
// chooses (the same sampler, penalties, constraints, in order), and the next row counts only
// while the chosen token equals the draft the row was computed with, so the output equals
// plain decoding's token for token, seeded sampling included. The module's latents live in
// an extra layer of the same cache blocks, so prefix-cache blocks carry them too.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "runtime/generator.h"
#include "runtime/kv_cache.h"
#include "runtime/prefix_cache.h"
#include "tokenizer/tokenizer.h"

namespace whale {

struct EngineConfig {
  int64_t parallel = 4;        // sequences decoding at once
  int64_t ctx = 4096;          // the longest sequence (prompt + output) in tokens
  int64_t kv_tokens = 0;       // KV pool size in tokens; 0: parallel * ctx
  int64_t block_size = 16;
  int64_t prefill_chunk = 512; // prompt tokens of one sequence per step
  int64_t step_tokens = 512;   // tokens per step (decode tokens count first)
  bool prefix_cache = true;
  int64_t draft = 0;           // MTP draft tokens per sequence and step (0: no speculation; 1..8)
};

struct TokenLogprob {
  int32_t id;
  float logprob;
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens, best first
};

struct EngineRequest {
  std::vector<int32_t> prompt;
  GenerationOptions options;
  int32_t top_logprobs = -1;             // -1: no logprobs; 0..20: the sampled token's and this many alternatives
  std::vector<int32_t> content_prefix;   // forced as soon as the answer starts (tool_choice "required")
  bool json = false;                     // constrain the answer to one JSON object (response_format)
  bool parse = true;                     // false: plain text (completions), no reasoning/tool-call split
};

// Counters and histograms for /metrics; read with Engine::metrics().
struct Histogram {
  std::vector<double> bounds;   // upper bounds in seconds
  std::vector<uint64_t> counts; // per bound, not cumulative; one more for +Inf
  double sum = 0;
  uint64_t n = 0;
  explicit Histogram(std::vector<double> b = {}) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v);
};

struct EngineMetrics {
  int64_t running = 0, waiting = 0;
  uint64_t requests_total = 0, prompt_tokens_total = 0, generated_tokens_total = 0, cached_tokens_total = 0;
  uint64_t steps_total = 0, step_tokens_total = 0;
  double prefill_seconds_total = 0, decode_seconds_total = 0;
  int64_t kv_blocks_total = 0, kv_blocks_free = 0, prefix_cache_blocks = 0, block_size = 0;
  Histogram ttft, itl, e2e;
  // MTP speculation: verify rounds, tokens drafted and accepted, accepted by draft position.
  uint64_t spec_rounds_total = 0, spec_draft_tokens_total = 0, spec_accepted_tokens_total = 0;
  std::vector<uint64_t> spec_accepted_at;  // [draft]
  EngineMetrics();
};

// What a request produced since the consumer last looked.
struct RequestOutput {
  std::vector<ParseEvent> events;
  std::vector<TokenLogprob> logprobs;
  bool finished = false;
  GenerationStats stats;  // when finished
  ParsedOutput result;    // when finished: the whole parsed output
  std::vector<int32_t> tokens;  // when finished: every generated token
  std::string error;      // when finished with an error
  double ttft_seconds = 0;
};

class RequestHandle {
 public:
  // Blocks until there is output or the request finished (or the timeout passed); moves the
  // output out. Returns false once a finished request has been fully drained.
  bool wait(RequestOutput& out, std::chrono::milliseconds timeout = std::chrono::milliseconds(100));
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class Engine;
  std::mutex mu_;
  std::condition_variable cv_;
  RequestOutput pending_;
  bool drained_ = false;
  std::atomic<bool> cancelled_{false};
};

class Engine {
 public:
  Engine(Model& model, const Tokenizer& tokenizer, EngineConfig config);
  ~Engine();  // stops the engine thread; unfinished requests end as "cancelled"

  // Queues a request. Throws Error for a request that can never run (empty, too long for
  // the context, token ids out of range).
  std::shared_ptr<RequestHandle> submit(EngineRequest request);

  // Runs a request to the end on the calling thread's behalf (convenience for tests/CLI).
  RequestOutput run(EngineRequest request);

  EngineMetrics metrics() const;
  const EngineConfig& config() const { return config_; }
  const Model& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  struct Sequence;
  void loop();
  void admit();
  bool step();  // false when there was nothing to do
  void finish(Sequence& s, const std::string& reason, const std::string& error = "");
  int32_t choose(Sequence& s, float* logits);  // masks the row in place (never the chosen token)
  bool accept(Sequence& s, int32_t token, const float* logits);  // false when the sequence ended
  void logprobs(Sequence& s, const float* logits);
  void emit(Sequence& s, const std::string& text);  // output text -> events
  int32_t allocate_block();
  void ensure(Sequence& s, int64_t more);  // blocks for `more` tokens after the cached ones
  void propose();  // MTP drafts for every decoding sequence (speculation)
  // Runs the MTP module over the positions a step added (its inputs: the main model's
  // hidden states `hidden` [T, D] of `batch` and the tokens that follow each position).
  void mtp_catch_up(const Batch& batch, const std::vector<Sequence*>& owners, const std::vector<float>& hidden);
  int64_t outstanding_blocks() const;  // reserved but not yet allocated, over running sequences

  Model& model_;
  const Tokenizer& tokenizer_;
  EngineConfig config_;
  std::unique_ptr<KVCache> cache_;
  std::unique_ptr<PrefixCache> prefix_;
  std::vector<int32_t> eos_ids_, think_close_, no_text_ids_;

  mutable std::mutex mu_;  // guards submitted_ and metrics_
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> submitted_;
  EngineMetrics metrics_;
  bool stop_ = false;

  // Engine-thread state.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<float> logits_, hidden_;
  std::vector<float> mtp_logits_, mtp_hidden_;  // the MTP module's outputs (propose, mtp_catch_up)
  std::thread thread_;
};

}  // namespace whale
