#include "runtime/engine.h"

#include <algorithm>

#include "core/error.h"

namespace whale {

void EngineConfig::validate() {
  if (parallel < 1 || parallel > 1024) fail("parallel must be in 1..1024 (got ", parallel, ")");
  if (ctx < 2) fail("ctx must be at least 2 tokens (got ", ctx, ")");
  if (block_size < 1 || prefill_chunk < 1) fail("block_size and prefill_chunk must be positive");
  if (kv_tokens == 0) kv_tokens = parallel * ctx;
  if (kv_tokens < ctx) fail("the KV cache (", kv_tokens, " tokens) must hold at least one full context (", ctx, ")");
  if (draft < 0 || draft > 8) fail("draft must be in 0..8 tokens per step (got ", draft, ")");
  if (store && !prefix_cache) fail("the KV cache's RAM and disk tiers need the prefix cache");
  if (window_slots < 0) fail("window_slots must not be negative (got ", window_slots, ")");
  step_tokens = std::max(step_tokens, parallel * (draft + 1) + 1);  // decoding never starves prompts
}

namespace {
EngineConfig validated(EngineConfig c) {
  c.validate();
  return c;
}

// The pool and, with a store, the key namespace of its blocks: the model's identity, the cache
// groups (the MTP module's latents are part of a block when drafting) and the block size.
std::unique_ptr<KVCacheManager> make_cache(const Model& model, const EngineConfig& c) {
  std::vector<CacheGroupSpec> groups = model.cache_groups(/*with_mtp=*/c.draft > 0);
  BlockKey root;
  if (c.store && c.model_identity) {
    root = cache_root(*c.model_identity, groups, c.block_size);
  } else if (c.store && c.store->has_disk()) {  // blocks outlive the process: the weights name them
    root = cache_root(model_identity(model, c.store->memo_dir()), groups, c.block_size);
  } else {  // within this process (the pool's own index, a RAM tier): this model object names them
    const std::string here = std::to_string(reinterpret_cast<uintptr_t>(&model)) + "|" +
                             (c.store ? c.store->nonce().hex() : std::string("pool"));
    root = cache_root(Sha256::of(here), groups, c.block_size);
  }
  // Windowed groups (V4's sliding-window kv and compressor inputs): a sequence holds, after its
  // step's reserve, its window, one block of margin, the step's blocks and partial blocks at
  // both ends. By default four times what the sequences and a step hold at most, so that the
  // windows of recently finished conversations stay for their next turn's prefix hit.
  int64_t window = 0;
  for (const CacheGroupSpec& g : groups) window = std::max(window, g.window);
  const int64_t per_seq = (window + c.block_size - 1) / c.block_size + 5;
  const int64_t held = c.parallel * per_seq + (c.step_tokens + c.block_size - 1) / c.block_size;
  if (window > 0 && c.window_slots > 0 && c.window_slots < held)
    fail("window_slots: ", c.window_slots, " blocks cannot hold the windows of ", c.parallel, " sequences (at least ", held, ")");
  const int64_t window_slots = window == 0 ? 0 : c.window_slots > 0 ? c.window_slots : 4 * held;
  return std::make_unique<PagedKVCache>(std::move(groups), c.block_size, (c.kv_tokens + c.block_size - 1) / c.block_size,
                                        c.prefix_cache, root, c.store, /*key_lookahead=*/c.draft > 0, window_slots);
}
}  // namespace

Engine::Engine(Model& model, const Tokenizer* tokenizer, EngineConfig config)
    : model_(model),
      config_(validated(std::move(config))),
      vocab_(model.config().vocab_size, model.config().eos_token_ids, tokenizer),
      cache_(make_cache(model, config_)),
      scheduler_(config_, *cache_, config_.draft > 0,
                 [w = waker_] {
                   std::lock_guard<std::mutex> lock(w->mu);
                   if (w->engine) w->engine->wake();
                 }),
      runner_(model, *cache_, config_),
      output_(*cache_, model.pool()) {
  metrics_.kv_blocks_total = metrics_.kv_blocks_free = cache_->total_blocks();
  metrics_.block_size = config_.block_size;
  metrics_.spec_accepted_at.assign(size_t(config_.draft), 0);
  waker_->engine = this;
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(waker_->mu);
    waker_->engine = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& s : submitted_) scheduler_.add(std::move(s));
  fail_all(scheduler_.all(), "cancelled", "");
}

void Engine::cancel_all() {
  cancel_all_.store(true);
  cv_.notify_all();
}

std::shared_ptr<RequestHandle> Engine::submit(EngineRequest r) {
  const int64_t n = int64_t(r.prompt.size()), vocab = model_.config().vocab_size;
  if (n == 0) fail("empty prompt");
  if (n >= config_.ctx)
    fail("the prompt is ", n, " tokens but the context holds ", config_.ctx, " (prompt plus at least one generated token)");
  for (int32_t t : r.prompt)
    if (t < 0 || t >= vocab) fail("prompt token id ", t, " is out of range (vocab_size ", vocab, ")");
  if (r.options.max_tokens < 1) fail("max_tokens must be at least 1");
  if (r.top_logprobs > 20) fail("top_logprobs must be at most 20");
  const int64_t max_new = std::min(r.options.max_tokens, config_.ctx - n);
  auto s = std::make_unique<Sequence>(std::move(r), vocab_, max_new);
  auto handle = s->handle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) fail("the engine is shutting down");
    submitted_.push_back(std::move(s));
    ++metrics_.waiting;
  }
  cv_.notify_all();
  return handle;
}

RequestOutput Engine::run(EngineRequest request) { return submit(std::move(request))->wait_finished(); }

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

KVStoreStats Engine::store_stats() const { return config_.store ? config_.store->stats() : KVStoreStats{}; }

int64_t Engine::stored_prefix_tokens(std::span<const int32_t> tokens) const {
  const int64_t bs = cache_->block_tokens();
  return cache_->lower_blocks(tokens, 0, int64_t(tokens.size()) / bs) * bs;
}

void Engine::wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || !submitted_.empty() || scheduler_.n_running() > 0 || scheduler_.n_waiting() > 0;
      });
      if (stop_) return;
      while (!submitted_.empty()) {
        scheduler_.add(std::move(submitted_.front()));
        submitted_.pop_front();
      }
    }
    if (cancel_all_.exchange(false)) fail_all(scheduler_.all(), "cancelled", "");
    bool worked = false;
    try {
      worked = step();
    } catch (const std::exception& e) {  // a failed step ends the sequences in it, not the server
      fail_all(scheduler_.running_sequences(), "error", e.what());
    }
    const KVCacheStats kv = cache_->stats();
    {
      std::lock_guard<std::mutex> lock(mu_);
      metrics_.running = scheduler_.n_running();
      metrics_.waiting = scheduler_.n_waiting() + int64_t(submitted_.size());
      metrics_.kv_blocks_free = kv.blocks_free;
      metrics_.prefix_cache_blocks = kv.prefix_blocks;
    }
    if (!worked) {  // nothing could run (queued for memory, or loading): wait for a change
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return stop_ || !submitted_.empty() || woken_; });
      woken_ = false;
    }
  }
}

bool Engine::step() {
  StepStats stats;
  std::vector<Delivery> deliveries;
  cache_->poll();
  scheduler_.admit();
  const StepPlan plan = scheduler_.schedule();
  if (!plan.empty()) {
    StepResult& result = runner_.execute(plan);
    stats.step_tokens = plan.decode_tokens + plan.prompt_tokens;
    stats.prompt_tokens = plan.prompt_tokens;
    stats.forward_seconds = result.forward_seconds;
    output_.process(plan, result, stats);
    runner_.catch_up(plan);
    scheduler_.after_step(plan);
    for (const PlannedChunk& c : plan.chunks) output_.collect(*c.seq, stats, deliveries);
  }
  retire(stats, deliveries);
  return !plan.empty();
}

void Engine::retire(StepStats& stats, std::vector<Delivery>& deliveries) {
  for (auto& s : scheduler_.retire()) output_.collect(*s, stats, deliveries);
  {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_.apply(stats);
  }
  for (Delivery& d : deliveries) d.handle->deliver(std::move(d.output));
}

void Engine::fail_all(const std::vector<Sequence*>& seqs, const std::string& reason, const std::string& error) {
  for (Sequence* s : seqs) s->decode.finish(reason, error);
  StepStats stats;
  std::vector<Delivery> deliveries;
  retire(stats, deliveries);
}

}  // namespace whale
