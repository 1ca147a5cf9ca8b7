#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "runtime/json_constraint.h"

namespace whale {

namespace {
using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
std::vector<double> latency_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60};
}
}  // namespace

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++n;
}

EngineMetrics::EngineMetrics() : ttft(latency_buckets()), itl(latency_buckets()), e2e(latency_buckets()) {}

bool RequestHandle::wait(RequestOutput& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (drained_) return false;
  cv_.wait_for(lock, timeout, [&] { return pending_.finished || !pending_.events.empty() || !pending_.logprobs.empty(); });
  out = std::move(pending_);
  pending_ = RequestOutput{};
  if (out.finished) drained_ = true;
  return true;
}

struct Engine::Sequence {
  Sequence(EngineRequest r, const Tokenizer& tok)
      : req(std::move(r)),
        handle(std::make_shared<RequestHandle>()),
        sampler(req.options.sampling),
        parser(req.options.starts_in_reasoning, req.options.tool_syntax),
        decoder(tok),
        stop(req.options.stop) {
    if (req.json) json.emplace();
  }
  EngineRequest req;
  std::shared_ptr<RequestHandle> handle;
  SeqCache cache;
  int64_t prefilled = 0;  // prompt tokens whose latents are in the cache
  int64_t reserved = 0;   // blocks this sequence may use in all (its worst case)
  int64_t max_new = 0;
  std::vector<int32_t> output;
  Sampler sampler;
  OutputParser parser;
  StreamDecoder decoder;
  StopMatcher stop;
  std::optional<JsonConstraint> json;
  std::deque<int32_t> forced;
  bool prefix_forced = false;
  bool last_forced = false;  // the token just chosen was forced, not sampled
  bool stop_hit = false;     // a stop string ended the output
  std::string raw_text;      // the output when it is not parsed
  float lse = 0;             // log-sum-exp of this step's logits (logprobs)
  std::vector<std::pair<int32_t, float>> top;
  int32_t next = -1;  // token to feed at the next step (decoding)
  // MTP speculation: `mtp` views the blocks of `cache` with the module's own length (the
  // positions it has read, equal to cache.length between steps); its output at the last of
  // them (draft_logits [V], draft_hidden [D]) drafts the next step's tokens.
  SeqCache mtp;
  std::vector<float> draft_logits, draft_hidden;
  std::vector<int32_t> drafts;  // this step's proposals
  int64_t want = 0;             // how many this step drafts
  GenerationStats stats;
  Clock::time_point submitted = Clock::now(), admitted, first_token, last_token;
  RequestOutput out;  // produced this step, not yet handed over

  bool decoding() const { return prefilled == int64_t(req.prompt.size()); }
  int32_t token_at(int64_t pos) const {  // the sequence's token at a position (prompt, then output)
    const int64_t n = int64_t(req.prompt.size());
    return pos < n ? req.prompt[size_t(pos)] : output[size_t(pos - n)];
  }
};

Engine::Engine(Model& model, const Tokenizer& tokenizer, EngineConfig config)
    : model_(model), tokenizer_(tokenizer), config_(config) {
  auto& c = config_;
  if (c.parallel < 1 || c.parallel > 1024) fail("parallel must be in 1..1024 (got ", c.parallel, ")");
  if (c.ctx < 2) fail("ctx must be at least 2 tokens (got ", c.ctx, ")");
  if (c.block_size < 1 || c.prefill_chunk < 1) fail("block_size and prefill_chunk must be positive");
  if (c.kv_tokens == 0) c.kv_tokens = c.parallel * c.ctx;
  if (c.kv_tokens < c.ctx) fail("the KV cache (", c.kv_tokens, " tokens) must hold at least one full context (", c.ctx, ")");
  if (c.draft < 0 || c.draft > 8) fail("draft must be in 0..8 tokens per step (got ", c.draft, ")");
  if (c.draft > 0 && model_.mtp_modules() == 0)
    fail("this model has no MTP module (model.layers.", model_.config().num_hidden_layers,
         ".eh_proj.weight is missing); speculative decoding with --spec mtp needs one");
  c.step_tokens = std::max(c.step_tokens, c.parallel * (c.draft + 1) + 1);  // decoding never starves prompts
  const int64_t blocks = (c.kv_tokens + c.block_size - 1) / c.block_size;
  cache_ = model_.make_cache(blocks * c.block_size, c.block_size, /*with_mtp=*/c.draft > 0);
  if (c.prefix_cache) prefix_ = std::make_unique<PrefixCache>(*cache_);

  for (int64_t e : model_.config().eos_token_ids) eos_ids_.push_back(int32_t(e));
  if (tokenizer_.eos_id() >= 0) eos_ids_.push_back(tokenizer_.eos_id());
  think_close_ = tokenizer_.encode("</think>");
  for (int32_t id = 0; id < int32_t(model_.config().vocab_size); ++id)
    if (!tokenizer_.is_valid_id(id)) no_text_ids_.push_back(id);
  metrics_.kv_blocks_total = metrics_.kv_blocks_free = cache_->n_blocks();
  metrics_.block_size = c.block_size;
  metrics_.spec_accepted_at.assign(size_t(c.draft), 0);
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& s : running_) finish(*s, "cancelled");
  for (auto& s : waiting_) finish(*s, "cancelled");
  for (auto& s : submitted_) finish(*s, "cancelled");
  running_.clear();  // sequences release their blocks before the prefix cache and pool go
  prefix_.reset();
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
  auto s = std::make_unique<Sequence>(std::move(r), tokenizer_);
  s->max_new = std::min(s->req.options.max_tokens, config_.ctx - n);
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

RequestOutput Engine::run(EngineRequest request) {
  auto h = submit(std::move(request));
  RequestOutput all, part;
  while (h->wait(part, std::chrono::milliseconds(1000))) {
    all.events.insert(all.events.end(), part.events.begin(), part.events.end());
    all.logprobs.insert(all.logprobs.end(), part.logprobs.begin(), part.logprobs.end());
    if (part.finished) {
      all.finished = true;
      all.stats = part.stats;
      all.result = part.result;
      all.tokens = part.tokens;
      all.error = part.error;
      all.ttft_seconds = part.ttft_seconds;
    }
  }
  return all;
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

int64_t Engine::outstanding_blocks() const {
  int64_t n = 0;
  for (const auto& s : running_) n += s->reserved - int64_t(s->cache.blocks.size());
  return n;
}

int32_t Engine::allocate_block() {
  if (cache_->free_blocks() == 0 && prefix_) prefix_->evict(1);
  const int32_t b = cache_->allocate();
  WHALE_CHECK(b >= 0, "KV cache exhausted despite admission control");
  return b;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !submitted_.empty() || !running_.empty() || !waiting_.empty(); });
      if (stop_) return;
      while (!submitted_.empty()) {
        waiting_.push_back(std::move(submitted_.front()));
        submitted_.pop_front();
      }
    }
    admit();
    bool worked = false;
    try {
      worked = step();
    } catch (const std::exception& e) {  // a failed step ends the sequences in it, not the server
      for (auto& s : running_) finish(*s, "error", e.what());
      running_.clear();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      metrics_.running = int64_t(running_.size());
      metrics_.waiting = int64_t(waiting_.size() + submitted_.size());
      metrics_.kv_blocks_free = cache_->free_blocks() + (prefix_ ? prefix_->evictable() : 0);
      metrics_.prefix_cache_blocks = prefix_ ? prefix_->size() : 0;
    }
    if (!worked && running_.empty()) {  // nothing could run: wait for a change
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return stop_ || !submitted_.empty(); });
    }
  }
}

void Engine::admit() {
  const int64_t bs = config_.block_size;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->handle->cancelled()) {
      finish(**it, "cancelled");
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  while (!waiting_.empty() && int64_t(running_.size()) < config_.parallel) {
    Sequence& s = *waiting_.front();
    const int64_t n = int64_t(s.req.prompt.size());
    const int64_t total = (n + s.max_new + bs - 1) / bs;  // blocks for the worst case
    // Reuse whole cached blocks, but never the one holding the last prompt token: it is
    // recomputed for its logits.
    std::vector<int32_t> matched;
    if (prefix_) matched = prefix_->match(s.req.prompt, (n - 1) / bs);
    // With speculation the last matched block is recomputed as well: the MTP latent of a
    // block's last position was computed with the token after it, which only the next block
    // (not matched) holds, so it may belong to another continuation.
    if (config_.draft > 0 && !matched.empty()) {
      cache_->release(matched.back());
      matched.pop_back();
    }
    const int64_t available = cache_->free_blocks() + (prefix_ ? prefix_->evictable() : 0) - outstanding_blocks();
    if (total - int64_t(matched.size()) > available) {  // head of the queue waits for memory
      for (int32_t b : matched) cache_->release(b);
      break;
    }
    s.cache.blocks = matched;
    s.cache.length = s.prefilled = int64_t(matched.size()) * bs;
    s.mtp.length = s.cache.length;
    s.stats.prompt_tokens = n;
    s.stats.cached_tokens = s.prefilled;
    s.reserved = total;
    s.admitted = Clock::now();
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

bool Engine::step() {
  for (auto& s : running_)
    if (s->handle->cancelled()) finish(*s, "cancelled");
  std::erase_if(running_, [](const auto& s) { return s->out.finished; });
  if (running_.empty()) return false;

  const int64_t bs = config_.block_size;
  const bool spec = config_.draft > 0;
  if (spec) propose();

  // One entry per sequence with logits rows: decoding ones first (the next token, then its
  // drafts: one row each), then prompt chunks that end their prompt (one row).
  struct Entry {
    Sequence* s;
    int64_t first_row, n_rows;
    bool prefill_done;
  };
  Batch batch;
  std::vector<Entry> entries;
  std::vector<Sequence*> owners;  // the sequence of each batch.seqs entry
  int64_t n_rows = 0, decode_tokens = 0;
  for (auto& s : running_) {
    if (!s->decoding()) continue;
    std::vector<int32_t> toks = {s->next};
    toks.insert(toks.end(), s->drafts.begin(), s->drafts.end());
    const int64_t n = int64_t(toks.size());
    ensure(*s, n);
    batch.add(&s->cache, toks.data(), n, /*logits_for_last_only=*/false);
    batch.seqs.back().form = AttentionForm::Absorbed;
    owners.push_back(s.get());
    entries.push_back({s.get(), n_rows, n, false});
    n_rows += n;
    decode_tokens += n;
  }
  int64_t budget = config_.step_tokens - decode_tokens;
  for (auto& s : running_) {
    if (s->decoding() || budget <= 0) continue;
    const int64_t n = std::min({config_.prefill_chunk, int64_t(s->req.prompt.size()) - s->prefilled, budget});
    ensure(*s, n);
    const bool last = s->prefilled + n == int64_t(s->req.prompt.size());
    const int32_t* toks = s->req.prompt.data() + s->prefilled;
    if (last) {
      batch.add(&s->cache, toks, n);
      entries.push_back({s.get(), n_rows, 1, true});
      ++n_rows;
    } else {  // a middle chunk: no logits needed
      batch.seqs.push_back({&s->cache, int64_t(batch.tokens.size()), n});
      batch.tokens.insert(batch.tokens.end(), toks, toks + n);
    }
    batch.seqs.back().form = AttentionForm::MHA;  // prompt tokens: the same form whatever the chunking
    owners.push_back(s.get());
    s->prefilled += n;
    budget -= n;
  }

  const int64_t V = model_.config().vocab_size;
  logits_.resize(size_t(n_rows * V));
  if (spec) hidden_.resize(batch.tokens.size() * size_t(model_.config().hidden_size));
  const auto t0 = Clock::now();
  model_.forward(batch, *cache_, logits_.data(), spec ? hidden_.data() : nullptr);
  const auto t1 = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++metrics_.steps_total;
    metrics_.step_tokens_total += batch.tokens.size();
    const int64_t prefill_tokens = int64_t(batch.tokens.size()) - decode_tokens;
    (prefill_tokens > 0 ? metrics_.prefill_seconds_total : metrics_.decode_seconds_total) += seconds(t0, t1);
  }

  for (const Entry& e : entries) {
    Sequence& s = *e.s;
    if (!e.prefill_done) continue;
    s.stats.prefill_seconds = seconds(s.admitted, t1);
    if (prefix_) prefix_->insert(s.req.prompt, s.cache.blocks, int64_t(s.req.prompt.size()) / bs);
  }
  // Sampling touches only each sequence's own state: first rows in parallel (over a ~100K
  // vocabulary it costs about as much as a small model's forward step). choose() masks its
  // row in place but never the token it picks, so logits[token] stays the model's logit.
  auto row = [&](int64_t r) { return &logits_[size_t(r * V)]; };
  std::vector<int32_t> chosen(entries.size());
  model_.pool().parallel_for(int64_t(entries.size()), [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      Sequence& s = *entries[size_t(i)].s;
      float* logits = row(entries[size_t(i)].first_row);
      if (s.req.top_logprobs >= 0) logprobs(s, logits);
      chosen[size_t(i)] = choose(s, logits);
    }
  });
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    Sequence& s = *e.s;
    bool alive = accept(s, chosen[i], row(e.first_row));
    // Row j+1 was computed after draft j: it counts while the chosen tokens equal the drafts.
    int64_t a = 0;
    for (; a < e.n_rows - 1 && alive && s.output.back() == s.drafts[size_t(a)]; ++a) {
      float* logits = row(e.first_row + a + 1);
      if (s.req.top_logprobs >= 0) logprobs(s, logits);
      alive = accept(s, choose(s, logits), logits);
    }
    if (e.n_rows == 1) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++metrics_.spec_rounds_total;
      metrics_.spec_draft_tokens_total += uint64_t(e.n_rows - 1);
      metrics_.spec_accepted_tokens_total += uint64_t(a);
      for (int64_t j = 0; j < a; ++j) ++metrics_.spec_accepted_at[size_t(j)];
    }
    if (alive) s.cache.truncate(*cache_, s.cache.length - (e.n_rows - 1 - a));  // drop the refused drafts' latents
  }
  if (spec) mtp_catch_up(batch, owners, hidden_);
  for (auto& s : running_) {
    if (s->out.events.empty() && s->out.logprobs.empty() && !s->out.finished) continue;
    std::lock_guard<std::mutex> lock(s->handle->mu_);
    auto& p = s->handle->pending_;
    p.events.insert(p.events.end(), s->out.events.begin(), s->out.events.end());
    p.logprobs.insert(p.logprobs.end(), s->out.logprobs.begin(), s->out.logprobs.end());
    s->out.events.clear();
    s->out.logprobs.clear();
    s->handle->cv_.notify_all();
  }
  std::erase_if(running_, [](const auto& s) { return s->out.finished; });
  return true;
}

void Engine::ensure(Sequence& s, int64_t more) {
  const int64_t bs = config_.block_size, need = (s.cache.length + more + bs - 1) / bs;
  while (int64_t(s.cache.blocks.size()) < need) s.cache.blocks.push_back(allocate_block());
}

// Greedy drafts from the MTP module: the first from its output at the last position read, each
// further one by running the module on the previous draft with its own output state (the
// main model's state for that position is not known yet).
void Engine::propose() {
  const int64_t V = model_.config().vocab_size, D = model_.config().hidden_size;
  std::vector<Sequence*> drafting;
  for (auto& s : running_) {
    s->drafts.clear();
    if (!s->decoding() || s->draft_logits.empty()) continue;
    s->want = std::min(config_.draft, s->max_new - s->stats.generated_tokens - 1);  // never past max_tokens
    if (s->want <= 0) continue;
    ensure(*s, s->want + 1);
    s->mtp.blocks = s->cache.blocks;
    s->drafts.push_back(argmax(s->draft_logits.data(), V));
    drafting.push_back(s.get());
  }
  std::vector<float> hidden_in;
  for (;;) {
    Batch b;
    std::vector<Sequence*> in;
    hidden_in.clear();
    for (Sequence* s : drafting) {
      if (int64_t(s->drafts.size()) >= s->want) continue;
      b.add(&s->mtp, &s->drafts.back(), 1);
      hidden_in.insert(hidden_in.end(), s->draft_hidden.begin(), s->draft_hidden.end());
      in.push_back(s);
    }
    if (in.empty()) break;
    mtp_logits_.resize(in.size() * size_t(V));
    mtp_hidden_.resize(in.size() * size_t(D));
    model_.mtp_forward(0, b, hidden_in.data(), *cache_, mtp_logits_.data(), mtp_hidden_.data(), model_.mtp_cache_layer());
    for (size_t i = 0; i < in.size(); ++i) {
      in[i]->draft_hidden.assign(&mtp_hidden_[i * size_t(D)], &mtp_hidden_[(i + 1) * size_t(D)]);
      in[i]->drafts.push_back(argmax(&mtp_logits_[i * size_t(V)], V));
    }
  }
  for (Sequence* s : drafting) s->mtp.length = s->cache.length;  // drafted positions are redone from exact states
}

// The MTP module reads position p as (the main model's hidden state at p, the token at p+1):
// after a step every new position's next token is known (prompt, or the token just chosen).
void Engine::mtp_catch_up(const Batch& batch, const std::vector<Sequence*>& owners, const std::vector<float>& hidden) {
  const int64_t V = model_.config().vocab_size, D = model_.config().hidden_size;
  Batch b;
  std::vector<Sequence*> in;
  std::vector<float> hidden_in;
  std::vector<int32_t> toks;
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    Sequence& s = *owners[i];
    const int64_t p0 = s.mtp.length, n = s.cache.length - p0;
    if (s.out.finished || n <= 0) continue;
    toks.resize(size_t(n));
    for (int64_t k = 0; k < n; ++k) toks[size_t(k)] = s.token_at(p0 + k + 1);
    s.mtp.blocks = s.cache.blocks;
    const float* h = &hidden[size_t(batch.seqs[i].first * D)];
    hidden_in.insert(hidden_in.end(), h, h + n * D);
    if (s.decoding()) {
      b.add(&s.mtp, toks.data(), n);  // logits of the last position: the next drafts
    } else {
      b.seqs.push_back({&s.mtp, int64_t(b.tokens.size()), n});
      b.tokens.insert(b.tokens.end(), toks.begin(), toks.end());
    }
    in.push_back(&s);
  }
  if (b.tokens.empty()) return;
  mtp_logits_.resize(b.logit_rows.size() * size_t(V));
  mtp_hidden_.resize(b.tokens.size() * size_t(D));
  model_.mtp_forward(0, b, hidden_in.data(), *cache_, mtp_logits_.data(), mtp_hidden_.data(), model_.mtp_cache_layer());
  size_t r = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    Sequence& s = *in[i];
    if (!s.decoding()) continue;
    const BatchSeq& q = b.seqs[i];
    s.draft_logits.assign(&mtp_logits_[r * size_t(V)], &mtp_logits_[(r + 1) * size_t(V)]);
    s.draft_hidden.assign(&mtp_hidden_[size_t((q.first + q.n_tokens - 1) * D)], &mtp_hidden_[size_t((q.first + q.n_tokens) * D)]);
    ++r;
  }
}

int32_t Engine::choose(Sequence& s, float* logits) {
  if (!s.prefix_forced && !s.req.content_prefix.empty() && !s.parser.in_reasoning() && s.forced.empty()) {
    s.prefix_forced = true;
    s.forced.assign(s.req.content_prefix.begin(), s.req.content_prefix.end());
  }
  s.last_forced = !s.forced.empty();
  if (!s.forced.empty()) {
    const int32_t t = s.forced.front();
    s.forced.pop_front();
    return t;
  }
  const int64_t V = model_.config().vocab_size;
  for (int32_t id : no_text_ids_) logits[size_t(id)] = -INFINITY;
  auto is_eos = [&](int32_t t) { return std::find(eos_ids_.begin(), eos_ids_.end(), t) != eos_ids_.end(); };
  if (!s.json || s.parser.in_reasoning()) return s.sampler.sample(logits, V, s.req.prompt, s.output);

  // JSON mode: draw, and mask and redraw what the grammar refuses; after a few refusals
  // mask every refused token at once.
  auto valid = [&](int32_t t) {
    if (is_eos(t)) return s.json->complete();
    return !tokenizer_.is_special(t) && s.json->accepts(tokenizer_.token_bytes(t));
  };
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int32_t t = s.sampler.sample(logits, V, s.req.prompt, s.output);
    if (logits[size_t(t)] == -INFINITY) break;
    if (valid(t)) return t;
    logits[size_t(t)] = -INFINITY;
  }
  for (int32_t t = 0; t < int32_t(V); ++t)
    if (logits[size_t(t)] != -INFINITY && !valid(t)) logits[size_t(t)] = -INFINITY;
  const int32_t t = s.sampler.sample(logits, V, s.req.prompt, s.output);
  return logits[size_t(t)] == -INFINITY ? (eos_ids_.empty() ? t : eos_ids_.front()) : t;
}

bool Engine::accept(Sequence& s, int32_t token, const float* logits) {
  if (std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end() && !s.last_forced) {
    finish(s, "stop");
    return false;
  }
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s.stats.generated_tokens == 0) metrics_.ttft.observe(seconds(s.submitted, now));
    else metrics_.itl.observe(seconds(s.last_token, now));
  }
  if (s.stats.generated_tokens == 0) s.first_token = now;
  s.last_token = now;
  if (s.req.top_logprobs >= 0) {
    TokenLogprob lp{token, logits[size_t(token)] - s.lse, {}};
    lp.top = std::move(s.top);
    s.out.logprobs.push_back(std::move(lp));
  }
  const bool reasoning = s.parser.in_reasoning();
  if (s.json && !reasoning && !s.last_forced) s.json->push(tokenizer_.token_bytes(token));
  s.output.push_back(token);
  ++s.stats.generated_tokens;
  if (reasoning) ++s.stats.reasoning_tokens;
  bool stopped = false;
  emit(s, s.stop.push(s.decoder.push(token), &stopped));
  if (stopped) {
    s.stop_hit = true;
    finish(s, "stop");
    return false;
  }
  const int64_t budget = s.req.options.thinking_budget;
  if (s.parser.in_reasoning() && budget >= 0 && s.stats.reasoning_tokens >= budget && s.forced.empty())
    s.forced.assign(think_close_.begin(), think_close_.end());
  if (s.stats.generated_tokens >= s.max_new) {
    finish(s, "length");
    return false;
  }
  s.next = token;
  return true;
}

// Log-probabilities of the model's distribution (before penalties, masks and temperature),
// as OpenAI reports them: the normaliser and the most likely tokens.
void Engine::logprobs(Sequence& s, const float* logits) {
  const int64_t V = model_.config().vocab_size;
  float mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[i] - mx));
  s.lse = mx + float(std::log(sum));
  s.top.clear();
  const int64_t k = std::min<int64_t>(s.req.top_logprobs, V);
  if (k <= 0) return;
  std::vector<std::pair<float, int32_t>> best;
  best.reserve(size_t(k) + 1);
  for (int64_t i = 0; i < V; ++i) {
    if (int64_t(best.size()) == k && logits[i] <= best.back().first) continue;
    best.emplace_back(logits[i], int32_t(i));
    std::sort(best.begin(), best.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    if (int64_t(best.size()) > k) best.pop_back();
  }
  for (const auto& [l, id] : best) s.top.emplace_back(id, l - s.lse);
}

void Engine::emit(Sequence& s, const std::string& text) {
  if (!s.req.parse) {
    if (text.empty()) return;
    s.raw_text += text;
    s.out.events.push_back({ParseEvent::Content, text});
    return;
  }
  for (auto& e : s.parser.push(text)) s.out.events.push_back(std::move(e));
}

void Engine::finish(Sequence& s, const std::string& reason, const std::string& error) {
  if (s.out.finished) return;
  if (!s.stop_hit) {  // release text held back for UTF-8 or a possible stop string
    bool stopped = false;
    std::string tail = s.stop.push(s.decoder.flush(), &stopped);
    if (!stopped) tail += s.stop.flush();
    emit(s, tail);
  }
  if (s.req.parse)
    for (const auto& e : s.parser.finish()) s.out.events.push_back(e);
  const auto now = Clock::now();
  s.stats.finish_reason = reason;
  if (s.stats.generated_tokens > 0) s.stats.decode_seconds = seconds(s.first_token, now);
  s.out.finished = true;
  s.out.stats = s.stats;
  s.out.result = s.req.parse ? s.parser.result() : ParsedOutput{{}, s.raw_text, {}};
  s.out.error = error;
  s.out.ttft_seconds = s.stats.generated_tokens > 0 ? seconds(s.submitted, s.first_token) : 0;
  s.cache.clear(*cache_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++metrics_.requests_total;
    metrics_.prompt_tokens_total += uint64_t(s.stats.prompt_tokens);
    metrics_.cached_tokens_total += uint64_t(s.stats.cached_tokens);
    metrics_.generated_tokens_total += uint64_t(s.stats.generated_tokens);
    metrics_.e2e.observe(seconds(s.submitted, now));
  }
  std::lock_guard<std::mutex> lock(s.handle->mu_);
  auto& p = s.handle->pending_;
  p.events.insert(p.events.end(), s.out.events.begin(), s.out.events.end());
  p.logprobs.insert(p.logprobs.end(), s.out.logprobs.begin(), s.out.logprobs.end());
  p.finished = true;
  p.stats = s.out.stats;
  p.result = s.out.result;
  p.tokens = s.output;
  p.error = error;
  p.ttft_seconds = s.out.ttft_seconds;
  s.out.events.clear();
  s.out.logprobs.clear();
  s.handle->cv_.notify_all();
}

}  // namespace whale
