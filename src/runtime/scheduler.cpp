#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/error.h"

namespace whale {

Scheduler::Scheduler(const EngineConfig& config, KVCacheManager& cache, bool drafting, std::function<void()> wake)
    : config_(config), cache_(cache), drafting_(drafting), wake_(std::move(wake)) {}

void Scheduler::add(std::unique_ptr<Sequence> s) { waiting_.push_back(std::move(s)); }

int64_t Scheduler::outstanding_blocks() const {
  int64_t n = 0;
  for (const auto& s : running_) n += s->reserved - int64_t(s->cache.blocks.size());
  return n;
}

void Scheduler::finish_load(Sequence& s) {
  LoadJob& job = *s.load;
  cache_.finish_load(job, s.req.prompt, s.cache);
  const int64_t bs = cache_.block_tokens();
  GenerationStats& st = s.decode.stats();
  st.cached_ram_tokens = job.from_ram * bs;
  st.cached_disk_tokens = std::max<int64_t>(0, s.cache.length - st.cached_tokens - st.cached_ram_tokens);
  st.cache_load_seconds = job.seconds;
  st.cached_tokens = s.cache.length;
  s.prefilled = s.mtp.length = s.cache.length;
  s.load.reset();
}

void Scheduler::admit() {
  const int64_t bs = cache_.block_tokens();
  for (auto& s : waiting_)
    if (s->handle->cancelled()) s->decode.finish("cancelled");
  for (auto& s : running_) {
    if (s->handle->cancelled()) s->decode.finish("cancelled");
    if (s->loading() && s->load->done.load()) finish_load(*s);
  }
  while (!waiting_.empty() && int64_t(running_.size()) < config_.parallel) {
    Sequence& s = *waiting_.front();
    if (s.decode.finished()) break;  // a cancelled head leaves through retire()
    const int64_t n = s.prompt_size();
    const int64_t total = (n + s.decode.max_new() + bs - 1) / bs;  // blocks for the worst case
    // Reuse whole cached blocks, but never the one holding the last prompt token: it is
    // recomputed for its logits. With speculation the last matched block is recomputed as
    // well: the MTP latent of a block's last position was computed with the token after it,
    // which only the next block (not matched) holds, so it may belong to another continuation.
    const int64_t max_blocks = (n - 1) / bs;
    SeqCache matched;
    cache_.match_prefix(s.req.prompt, max_blocks, matched);
    const int64_t in_pool = int64_t(matched.blocks.size());
    int64_t to_load = cache_.lower_blocks(s.req.prompt, in_pool, max_blocks - in_pool);
    if (drafting_ && in_pool + to_load > 0) {
      if (to_load > 0) --to_load;
      else cache_.truncate(matched, (in_pool - 1) * bs);
    }
    const int64_t available = cache_.available_blocks() - outstanding_blocks();
    if (total - int64_t(matched.blocks.size()) > available) {  // the head of the queue waits for memory
      cache_.release(matched);
      break;
    }
    s.cache = std::move(matched);
    if (to_load > 0) s.load = cache_.start_load(s.req.prompt, s.cache, to_load, wake_);
    s.prefilled = s.cache.length;
    s.mtp.length = s.cache.length;
    s.decode.stats().cached_tokens = s.prefilled;
    s.reserved = total;
    s.admitted = Clock::now();
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  if (cache_.store())  // the rest wait: their blocks on disk move up to RAM meanwhile
    for (auto& s : waiting_)
      if (!s->prefetched && !s->decode.finished()) {
        s->prefetched = true;
        cache_.prefetch(s->req.prompt, (s->prompt_size() - 1) / bs);
      }
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  auto reserve = [&](Sequence& s, int64_t n) {
    WHALE_CHECK(cache_.reserve(s.cache, n), "KV cache exhausted despite admission control");
  };
  for (auto& s : running_) {
    if (s->decode.finished() || !s->decoding() || s->loading()) continue;
    int64_t drafts = 0;
    if (config_.draft > 0 && !s->draft_logits.empty())  // never drafts past max_tokens
      drafts = std::max<int64_t>(0, std::min(config_.draft, s->decode.remaining() - 1));
    reserve(*s, 1 + drafts);
    plan.chunks.push_back({s.get(), 1 + drafts, drafts, /*decode=*/true, false});
    plan.decode_tokens += 1 + drafts;
  }
  int64_t budget = config_.step_tokens - plan.decode_tokens;
  for (auto& s : running_) {
    if (s->decode.finished() || s->decoding() || s->loading() || budget <= 0) continue;
    const int64_t n = std::min({config_.prefill_chunk, s->prompt_size() - s->prefilled, budget});
    reserve(*s, n);
    s->prefilled += n;
    plan.chunks.push_back({s.get(), n, 0, /*decode=*/false, /*ends_prompt=*/s->decoding()});
    plan.prompt_tokens += n;
    budget -= n;
  }
  return plan;
}

void Scheduler::after_step(const StepPlan& plan) {
  const int64_t bs = cache_.block_tokens();
  for (const PlannedChunk& c : plan.chunks) {
    if (!c.ends_prompt) continue;
    // With drafting, only blocks whose MTP latents are computed too (a sequence that finished
    // in this step was not caught up).
    const int64_t valid = drafting_ ? std::min(c.seq->prompt_size(), c.seq->mtp.length) : c.seq->prompt_size();
    cache_.commit_prefix(c.seq->req.prompt, c.seq->cache, valid / bs);
  }
}

void Scheduler::release(Sequence& s) {
  if (s.loading()) {  // the store may still be writing into its blocks: stop it, then let go
    cache_.store()->cancel(*s.load);  // a queued load leaves at once, a running one after its block
    while (!s.load->done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    finish_load(s);
  }
  // Whole blocks whose every entry is computed go to the prefix cache: with drafting, the
  // MTP module's latents too (they trail the main model's by the last step's positions).
  if (s.decode.stats().finish_reason != "error") {
    int64_t valid = std::min<int64_t>(s.cache.length, s.prompt_size() + int64_t(s.decode.output().size()));
    if (drafting_) valid = std::min(valid, s.mtp.length);
    std::vector<int32_t> tokens = s.req.prompt;
    tokens.insert(tokens.end(), s.decode.output().begin(), s.decode.output().end());
    cache_.commit_prefix(tokens, s.cache, valid / cache_.block_tokens());
  }
  cache_.release(s.cache);
  s.mtp = SeqCache{};
}

std::vector<std::unique_ptr<Sequence>> Scheduler::retire() {
  std::vector<std::unique_ptr<Sequence>> out;
  for (auto& s : running_)
    if (s->decode.finished()) {
      release(*s);
      out.push_back(std::move(s));
    }
  std::erase(running_, nullptr);
  for (auto& s : waiting_)
    if (s->decode.finished()) out.push_back(std::move(s));
  std::erase(waiting_, nullptr);
  return out;
}

std::vector<Sequence*> Scheduler::running_sequences() {
  std::vector<Sequence*> out;
  for (auto& s : running_) out.push_back(s.get());
  return out;
}

std::vector<Sequence*> Scheduler::all() {
  std::vector<Sequence*> out;
  for (auto& s : running_) out.push_back(s.get());
  for (auto& s : waiting_) out.push_back(s.get());
  return out;
}

}  // namespace whale
