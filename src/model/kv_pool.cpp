#include "model/kv_pool.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "core/mmap.h"

namespace whale {

void check_kv_memory(size_t bytes, int64_t tokens, size_t available) {
  if (available == 0) return;
  const size_t reserve = std::max(available / 8, size_t(1) << 30);
  if (bytes + reserve <= available) return;
  auto gib = [](size_t b) {
    char s[32];
    std::snprintf(s, sizeof s, "%.1f GiB", double(b) / double(size_t(1) << 30));
    return std::string(s);
  };
  fail("KV cache: room for ", tokens, " tokens needs ", gib(bytes), " (", bytes / size_t(std::max<int64_t>(tokens, 1)) / 1024,
       " KiB per token), but only ", gib(available), " of memory are available (", gib(reserve),
       " kept in reserve); lower --ctx or --parallel");
}

KVPool::KVPool(std::vector<CacheGroupSpec> groups, int64_t block_size, int64_t n_blocks, int64_t window_slots)
    : groups_(std::move(groups)), block_size_(block_size), n_blocks_(n_blocks),
      n_wslots_(window_slots > 0 ? std::min(window_slots, n_blocks) : n_blocks) {
  WHALE_CHECK(!groups_.empty() && block_size > 0 && n_blocks > 0, "KV cache: invalid geometry");
  size_t total = 0;
  for (const CacheGroupSpec& g : groups_) {
    WHALE_CHECK(g.n_layers > 0 && g.dim > 0 && g.stride > 0 && g.window >= 0, "KV cache: invalid geometry of group ", g.kind);
    WHALE_CHECK(g.window == 0 || g.stride == 1, "KV cache: the windowed group ", g.kind, " has a stride");
    if (block_size % g.stride != 0 && g.stride % block_size != 0)
      fail("KV cache: a block of ", block_size, " tokens cannot hold the ", g.kind, " entries (one per ", g.stride,
           " tokens); choose a block size that divides or is a multiple of ", g.stride);
    entries_.push_back(g.stride >= block_size ? 1 : block_size / g.stride);
    window_ = std::max(window_, g.window);
    total += sizeof(float) * size_t(g.n_layers * g.dim * entries_.back() * (g.window > 0 ? n_wslots_ : n_blocks));
  }
  check_kv_memory(total, n_blocks * block_size, memory_available());
  for (size_t g = 0; g < groups_.size(); ++g)
    data_.emplace_back(new float[size_t(groups_[g].n_layers * groups_[g].dim * entries_[g] *
                                        (groups_[g].window > 0 ? n_wslots_ : n_blocks))]);
  refs_.assign(size_t(n_blocks), 0);
  free_.reserve(size_t(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
  if (window_ == 0) return;
  wslot_.assign(size_t(n_blocks), -1);
  wholders_.assign(size_t(n_blocks), 0);
  wlru_at_.assign(size_t(n_blocks), wlru_.end());
  for (int64_t w = n_wslots_ - 1; w >= 0; --w) wfree_.push_back(int32_t(w));
}

int64_t KVPool::window_slot(int32_t block) const {
  const int32_t w = wslot_[size_t(block)];
  WHALE_CHECK(w >= 0, "internal: block ", block, "'s windowed cache values were given up");
  return w;
}

void KVPool::hold_window(int32_t block) {
  if (window_ == 0) return;
  WHALE_CHECK(wslot_[size_t(block)] >= 0, "internal: holding block ", block, "'s window, which was given up");
  if (wholders_[size_t(block)]++ == 0) {
    wlru_.erase(wlru_at_[size_t(block)]);
    wlru_at_[size_t(block)] = wlru_.end();
  }
}

void KVPool::unhold_window(int32_t block) {
  if (window_ == 0) return;
  WHALE_CHECK(wholders_[size_t(block)] > 0, "internal: block ", block, "'s window is not held");
  if (--wholders_[size_t(block)] == 0) wlru_at_[size_t(block)] = wlru_.insert(wlru_.end(), block);
}

void KVPool::drop_window(int32_t block) {
  if (window_ == 0 || wslot_[size_t(block)] < 0) return;
  WHALE_CHECK(wholders_[size_t(block)] == 0, "internal: dropping block ", block, "'s held window");
  wlru_.erase(wlru_at_[size_t(block)]);
  wlru_at_[size_t(block)] = wlru_.end();
  wfree_.push_back(wslot_[size_t(block)]);
  wslot_[size_t(block)] = -1;
}

KVPool::KVPool(int64_t n_layers, int64_t dim, int64_t block_size, int64_t n_blocks)
    : KVPool({CacheGroupSpec{"mla_latent", n_layers, dim}}, block_size, n_blocks) {}

size_t KVPool::bytes_per_block() const {
  size_t n = 0;
  for (size_t g = 0; g < groups_.size(); ++g) n += group_bytes(g);
  return n;
}

int32_t KVPool::allocate(bool window) {
  if (free_.empty()) return -1;
  int32_t w = -1;
  if (window && window_ > 0) {
    if (wfree_.empty() && !wlru_.empty()) drop_window(wlru_.front());  // the least recently released
    if (wfree_.empty()) return -1;
    w = wfree_.back();
    wfree_.pop_back();
  }
  int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  if (w >= 0) {
    wslot_[size_t(b)] = w;
    wholders_[size_t(b)] = 1;
  }
  return b;
}

void KVPool::retain(int32_t block) { ++refs_[size_t(block)]; }

void KVPool::release(int32_t block) {
  if (--refs_[size_t(block)] > 0) return;
  drop_window(block);
  free_.push_back(block);
}

int64_t usable_blocks(const KVPool& cache, const std::vector<int32_t>& blocks, int64_t n) {
  n = std::min<int64_t>(n, int64_t(blocks.size()));
  if (cache.window() == 0) return n;
  for (int64_t m = n; m > 0; --m) {
    bool ok = true;
    for (int64_t i = cache.window_start(m * cache.block_size()); i < m && ok; ++i) ok = cache.has_window(blocks[size_t(i)]);
    if (ok) return m;
  }
  return 0;
}

void SeqCache::slide(KVPool& cache) {
  const int64_t to = std::min<int64_t>(cache.window_start(length), int64_t(blocks.size()));
  for (; window_from < to; ++window_from) cache.unhold_window(blocks[size_t(window_from)]);
}

bool SeqCache::hold_windows(KVPool& cache) {
  const int64_t from = cache.window_start(length);
  for (int64_t i = from; i < window_from; ++i)
    if (!cache.has_window(blocks[size_t(i)])) return false;
  for (int64_t i = from; i < window_from; ++i) cache.hold_window(blocks[size_t(i)]);
  window_from = std::min(window_from, from);
  return true;
}

bool SeqCache::reserve(KVPool& cache, int64_t n_more) {
  slide(cache);
  const int64_t need = (length + n_more + cache.block_size() - 1) / cache.block_size() - int64_t(blocks.size());
  if (need <= 0) return true;
  if (need > cache.free_blocks() || need > cache.free_window_slots()) return false;
  for (int64_t i = 0; i < need; ++i) blocks.push_back(cache.allocate());
  return true;
}

void SeqCache::unhold_all(KVPool& cache) {
  for (; window_from < int64_t(blocks.size()); ++window_from) cache.unhold_window(blocks[size_t(window_from)]);
}

void SeqCache::pop_to(KVPool& cache, int64_t keep) {
  while (int64_t(blocks.size()) > keep) {
    if (int64_t(blocks.size()) > window_from) cache.unhold_window(blocks.back());
    cache.release(blocks.back());
    blocks.pop_back();
  }
  window_from = std::min<int64_t>(window_from, int64_t(blocks.size()));
}

void SeqCache::truncate(KVPool& cache, int64_t n) {
  if (n >= length) return;
  const int64_t bs = cache.block_size();
  pop_to(cache, (n + bs - 1) / bs);
  length = n;
  if (hold_windows(cache)) return;
  // Some window before the held ones is gone: back to the longest prefix that has its own.
  unhold_all(cache);
  adopt(cache, n / bs);
}

void SeqCache::adopt(KVPool& cache, int64_t max_blocks) {
  WHALE_CHECK(window_from == int64_t(blocks.size()), "internal: adopting blocks whose windows are held");
  const int64_t m = usable_blocks(cache, blocks, max_blocks);
  pop_to(cache, m);
  length = m * cache.block_size();
  window_from = m;
  WHALE_CHECK(hold_windows(cache), "internal: no window for ", length, " tokens");
}

void SeqCache::clear(KVPool& cache) {
  pop_to(cache, 0);
  length = 0;
}

}  // namespace whale
