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

KVPool::KVPool(std::vector<CacheGroupSpec> groups, int64_t block_size, int64_t n_blocks)
    : groups_(std::move(groups)), block_size_(block_size), n_blocks_(n_blocks) {
  WHALE_CHECK(!groups_.empty() && block_size > 0 && n_blocks > 0, "KV cache: invalid geometry");
  size_t total = 0;
  for (const CacheGroupSpec& g : groups_) {
    WHALE_CHECK(g.n_layers > 0 && g.dim > 0 && g.stride > 0, "KV cache: invalid geometry of group ", g.kind);
    if (block_size % g.stride != 0 && g.stride % block_size != 0)
      fail("KV cache: a block of ", block_size, " tokens cannot hold the ", g.kind, " entries (one per ", g.stride,
           " tokens); choose a block size that divides or is a multiple of ", g.stride);
    entries_.push_back(g.stride >= block_size ? 1 : block_size / g.stride);
    total += sizeof(float) * size_t(g.n_layers * g.dim * entries_.back() * n_blocks);
  }
  check_kv_memory(total, n_blocks * block_size, memory_available());
  for (size_t g = 0; g < groups_.size(); ++g)
    data_.emplace_back(new float[size_t(groups_[g].n_layers * groups_[g].dim * entries_[g] * n_blocks)]);
  refs_.assign(size_t(n_blocks), 0);
  free_.reserve(size_t(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

KVPool::KVPool(int64_t n_layers, int64_t dim, int64_t block_size, int64_t n_blocks)
    : KVPool({CacheGroupSpec{"mla_latent", n_layers, dim}}, block_size, n_blocks) {}

size_t KVPool::bytes_per_block() const {
  size_t n = 0;
  for (size_t g = 0; g < groups_.size(); ++g) n += group_bytes(g);
  return n;
}

int32_t KVPool::allocate() {
  if (free_.empty()) return -1;
  int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void KVPool::retain(int32_t block) { ++refs_[size_t(block)]; }

void KVPool::release(int32_t block) {
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

bool SeqCache::reserve(KVPool& cache, int64_t n_more) {
  const int64_t need = (length + n_more + cache.block_size() - 1) / cache.block_size() - int64_t(blocks.size());
  if (need <= 0) return true;
  if (need > cache.free_blocks()) return false;
  for (int64_t i = 0; i < need; ++i) blocks.push_back(cache.allocate());
  return true;
}

void SeqCache::truncate(KVPool& cache, int64_t n) {
  if (n >= length) return;
  const size_t keep = size_t((n + cache.block_size() - 1) / cache.block_size());
  while (blocks.size() > keep) {
    cache.release(blocks.back());
    blocks.pop_back();
  }
  length = n;
}

void SeqCache::clear(KVPool& cache) {
  for (int32_t b : blocks) cache.release(b);
  blocks.clear();
  length = 0;
}

}  // namespace whale
