#include "runtime/kv_cache.h"

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "core/error.h"

namespace whale {

PagedKVCache::PagedKVCache(std::vector<CacheGroupSpec> groups, int64_t block_tokens, int64_t n_blocks, bool prefix_cache,
                           const BlockKey& root, std::shared_ptr<KVStore> store, bool key_lookahead,
                           int64_t window_slots)
    : groups_(std::move(groups)), block_tokens_(block_tokens), root_(root), store_(std::move(store)), lookahead_(key_lookahead) {
  WHALE_CHECK(!groups_.empty(), "KV cache: a model with no cache groups");
  WHALE_CHECK(block_tokens > 0 && n_blocks > 0, "KV cache: invalid geometry");
  pool_ = std::make_unique<KVPool>(groups_, block_tokens, n_blocks, window_slots);
  if (pool_->window() > 0) {
    size_t widest = 0;
    for (size_t g = 0; g < groups_.size(); ++g) widest = std::max(widest, pool_->windowed(g) ? pool_->group_bytes(g) : 0);
    zeros_.assign(widest, std::byte{0});
    discard_.resize(widest);
    loaded_window_.assign(size_t(n_blocks), 0);
  }
  WHALE_CHECK(!store_ || prefix_cache, "KV cache: lower tiers need the prefix cache");
  if (prefix_cache) prefix_ = std::make_unique<PrefixCache>(ids(), root_);
}

PagedKVCache::~PagedKVCache() {
  while (!pinned_.empty()) {  // the store is still copying blocks out of this pool
    poll();
    if (!pinned_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  prefix_.reset();  // the index releases its blocks first
}

std::vector<BlockKey> PagedKVCache::keys(std::span<const int32_t> tokens, int64_t n_blocks) const {
  return block_keys(root_, tokens, block_tokens_, n_blocks, lookahead_);
}

std::vector<std::span<const std::byte>> PagedKVCache::export_pieces(int32_t block, bool with_window) const {
  std::vector<std::span<const std::byte>> out;
  const bool window = with_window && ids().has_window(block);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const size_t n = pool_->group_bytes(g);
    if (pool_->windowed(g) && !window) out.emplace_back(zeros_.data(), n);
    else out.emplace_back(reinterpret_cast<const std::byte*>(pool_->block_data(block, g)), n);
  }
  if (pool_->window() > 0)
    out.emplace_back(reinterpret_cast<const std::byte*>(window ? &has_window_ : &no_window_), sizeof(uint64_t));
  return out;
}

std::vector<std::span<std::byte>> PagedKVCache::import_pieces(int32_t block) {
  std::vector<std::span<std::byte>> out;
  const bool window = ids().has_window(block);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const size_t n = pool_->group_bytes(g);
    if (pool_->windowed(g) && !window) out.emplace_back(discard_.data(), n);
    else out.emplace_back(reinterpret_cast<std::byte*>(pool_->block_data(block, g)), n);
  }
  if (pool_->window() > 0)
    out.emplace_back(reinterpret_cast<std::byte*>(&loaded_window_[size_t(block)]), sizeof(uint64_t));
  return out;
}

int64_t PagedKVCache::available_blocks() const { return ids().free_blocks() + (prefix_ ? prefix_->evictable() : 0); }

int32_t PagedKVCache::allocate(bool window) {
  if (ids().free_blocks() == 0 && prefix_) prefix_->evict(1);
  return ids().allocate(window);
}

bool PagedKVCache::reserve(SeqCache& seq, int64_t n_more) {
  seq.slide(ids());
  const int64_t need = (seq.length + n_more + block_tokens_ - 1) / block_tokens_ - int64_t(seq.blocks.size());
  if (need <= 0) return true;
  // Unheld windows are reusable (free_window_slots counts them), whoever holds their blocks.
  if (need > available_blocks() || need > ids().free_window_slots()) return false;
  for (int64_t i = 0; i < need; ++i) {
    const int32_t b = allocate();
    WHALE_CHECK(b >= 0, "KV cache: no block although ", need, " were available");
    seq.blocks.push_back(b);
  }
  return true;
}

void PagedKVCache::truncate(SeqCache& seq, int64_t n_tokens) { seq.truncate(ids(), n_tokens); }

void PagedKVCache::release(SeqCache& seq) { seq.clear(ids()); }

bool PagedKVCache::fork(const SeqCache& src, SeqCache& dst) {
  WHALE_CHECK(dst.blocks.empty(), "fork: the destination already holds blocks");
  const int64_t whole = src.length / block_tokens_;
  const bool partial = src.length % block_tokens_ != 0;
  if (partial && (available_blocks() < 1 || ids().free_window_slots() < 1)) return false;
  for (int64_t i = 0; i < whole; ++i) {
    ids().retain(src.blocks[size_t(i)]);
    if (i >= src.window_from) ids().hold_window(src.blocks[size_t(i)]);
    dst.blocks.push_back(src.blocks[size_t(i)]);
  }
  dst.window_from = std::min(src.window_from, whole);
  if (partial) {
    const int32_t b = allocate();
    const int32_t from = src.blocks[size_t(whole)];
    for (size_t g = 0; g < groups_.size(); ++g)
      std::memcpy(pool_->block_data(b, g), pool_->block_data(from, g), pool_->group_bytes(g));
    dst.blocks.push_back(b);
  }
  dst.length = src.length;
  return true;
}

int64_t PagedKVCache::match_prefix(std::span<const int32_t> tokens, int64_t max_blocks, SeqCache& seq) {
  WHALE_CHECK(seq.blocks.empty(), "match_prefix: the sequence already holds blocks");
  if (!prefix_) return 0;
  seq.blocks = prefix_->match(keys(tokens, max_blocks));
  seq.window_from = int64_t(seq.blocks.size());
  seq.adopt(ids(), int64_t(seq.blocks.size()));  // as far as the windows before the end are kept
  return seq.length;
}

void PagedKVCache::commit_prefix(std::span<const int32_t> tokens, const SeqCache& seq, int64_t n_blocks) {
  index(tokens, seq, n_blocks, /*write_through=*/true);
}

void PagedKVCache::index(std::span<const int32_t> tokens, const SeqCache& seq, int64_t n_blocks, bool write_through) {
  if (!prefix_) return;
  n_blocks = std::min<int64_t>(n_blocks, int64_t(seq.blocks.size()));
  const std::vector<BlockKey> ks = keys(tokens, n_blocks);
  const std::vector<int64_t> added = prefix_->insert(ks, seq.blocks);
  if (!store_ || !write_through) return;
  for (int64_t i : added) {  // write-through: pinned until the store has its copy
    const int32_t b = seq.blocks[size_t(i)];
    // A window goes along only where the sequence holds it: its slot is then held on while the
    // store copies it, so pinned windows never outnumber what sequences hold (the engine's
    // sizing). A window kept unheld goes as zeros: pinning it would take a slot from the pool.
    const bool window = pool_->window() > 0 && ids().has_window(b) && i >= seq.window_from;
    auto job = std::make_shared<StoreJob>();
    job->key = ks[size_t(i)];
    job->pieces = export_pieces(b, window);
    ids().retain(b);
    if (window) ids().hold_window(b);
    pinned_.push_back({job, b, window});
    store_->store(std::move(job));
  }
}

void PagedKVCache::poll() {
  std::erase_if(pinned_, [&](const Pinned& p) {
    if (!p.job->copied.load()) return false;
    if (p.window) ids().unhold_window(p.block);
    ids().release(p.block);
    return true;
  });
}

int64_t PagedKVCache::lower_blocks(std::span<const int32_t> tokens, int64_t from, int64_t max_blocks) {
  if (!store_ || max_blocks <= 0) return 0;
  const std::vector<BlockKey> ks = keys(tokens, from + max_blocks);
  if (int64_t(ks.size()) <= from) return 0;
  return int64_t(store_->locate(std::span<const BlockKey>(ks).subspan(size_t(from))).size());
}

std::shared_ptr<LoadJob> PagedKVCache::start_load(std::span<const int32_t> tokens, SeqCache& seq, int64_t n,
                                                  std::function<void()> on_done) {
  WHALE_CHECK(store_ && n > 0, "start_load: nothing to load");
  WHALE_CHECK(seq.length == int64_t(seq.blocks.size()) * block_tokens_, "start_load: the sequence holds a partial block");
  WHALE_CHECK(n <= available_blocks(), "start_load: ", n, " blocks asked, ", available_blocks(), " available");
  const int64_t from = int64_t(seq.blocks.size());
  std::vector<BlockKey> ks = keys(tokens, from + n);
  WHALE_CHECK(int64_t(ks.size()) == from + n, "start_load: the tokens hold fewer blocks than asked");
  // Windows only for the blocks the loaded sequence will read them from; the others' are discarded.
  const int64_t window_from = std::max<int64_t>(seq.window_from, pool_->window_start((from + n) * block_tokens_));
  for (; seq.window_from < std::min(window_from, from); ++seq.window_from) ids().unhold_window(seq.blocks[size_t(seq.window_from)]);
  seq.window_from = window_from;
  WHALE_CHECK(from + n - std::max(window_from, from) <= ids().free_window_slots(), "start_load: no window slots for ", n, " blocks");
  auto job = std::make_shared<LoadJob>();
  job->block_bytes = block_bytes();
  job->keys.assign(ks.begin() + from, ks.end());
  job->on_done = std::move(on_done);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t b = allocate(/*window=*/from + i >= window_from);
    WHALE_CHECK(b >= 0, "start_load: no block although ", n, " were available");
    seq.blocks.push_back(b);
    if (pool_->window() > 0) loaded_window_[size_t(b)] = 0;
    job->dest.push_back(import_pieces(b));
  }
  store_->load(job);
  return job;
}

void PagedKVCache::finish_load(LoadJob& job, std::span<const int32_t> tokens, SeqCache& seq) {
  WHALE_CHECK(job.done.load(), "finish_load: the load is still running");
  const int64_t from = int64_t(seq.blocks.size()) - int64_t(job.keys.size());
  int64_t good = from + job.loaded;
  // Let go of every window, then of the blocks that did not load (garbage) and of loaded windows
  // the store had only zeros for; keep what has the windows it needs (SeqCache::adopt).
  seq.unhold_all(ids());
  seq.pop_to(ids(), good);
  if (pool_->window() > 0)
    for (int64_t i = from; i < good; ++i)
      if (loaded_window_[size_t(seq.blocks[size_t(i)])] != has_window_) ids().drop_window(seq.blocks[size_t(i)]);
  seq.adopt(ids(), good);
  good = int64_t(seq.blocks.size());
  // Indexed for other requests, but not written back: the store has these blocks already (and a
  // RAM copy of blocks just read from disk would push out the ones queued requests need next).
  if (job.loaded > 0) index(tokens, seq, good, /*write_through=*/false);
}

void PagedKVCache::prefetch(std::span<const int32_t> tokens, int64_t max_blocks) {
  if (!store_ || !store_->has_ram() || !store_->has_disk()) return;
  const std::vector<BlockKey> ks = keys(tokens, max_blocks);
  const std::vector<Tier> where = store_->locate(ks);
  auto job = std::make_shared<LoadJob>();
  job->block_bytes = block_bytes();
  for (size_t i = 0; i < where.size(); ++i)
    if (where[i] == Tier::kDisk) job->keys.push_back(ks[i]);
  if (!job->keys.empty()) store_->load(std::move(job));
}

size_t PagedKVCache::block_bytes() const { return pool_->bytes_per_block() + (pool_->window() > 0 ? sizeof(uint64_t) : 0); }

void PagedKVCache::export_block(int32_t block, std::span<std::byte> out) const {
  WHALE_CHECK(out.size() == block_bytes(), "export_block: ", out.size(), " bytes given for a block of ", block_bytes());
  WHALE_CHECK(block >= 0 && block < total_blocks() && ids().ref_count(block) > 0, "export_block: block ", block, " is not in use");
  size_t at = 0;
  for (std::span<const std::byte> p : export_pieces(block)) {
    std::memcpy(out.data() + at, p.data(), p.size());
    at += p.size();
  }
}

void PagedKVCache::import_block(int32_t block, std::span<const std::byte> in) {
  WHALE_CHECK(in.size() == block_bytes(), "import_block: ", in.size(), " bytes given for a block of ", block_bytes());
  WHALE_CHECK(block >= 0 && block < total_blocks() && ids().ref_count(block) == 1,
              "import_block: block ", block, " must be held by exactly one sequence");
  if (pool_->window() > 0) {
    uint64_t flag = 0;
    std::memcpy(&flag, in.data() + in.size() - sizeof flag, sizeof flag);
    WHALE_CHECK(flag == has_window_ || !ids().has_window(block), "import_block: block ", block,
                " comes without its windowed values");
  }
  size_t at = 0;
  for (std::span<std::byte> p : import_pieces(block)) {
    std::memcpy(p.data(), in.data() + at, p.size());
    at += p.size();
  }
}

KVCacheStats PagedKVCache::stats() const {
  return {total_blocks(), available_blocks(), prefix_ ? prefix_->size() : 0, block_bytes()};
}

}  // namespace whale
