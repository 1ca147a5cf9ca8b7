// Prefix cache over KV blocks: whole blocks of prompt tokens, keyed by a hash chain
// (hash of the parent block's key and this block's tokens), so any request whose prompt
// starts with the same tokens reuses their latents instead of recomputing them.
//
// The cache holds one reference on every block it indexes. A block whose only reference
// is the cache's is evictable; blocks in use by a sequence are not (a sequence holding a
// block also holds all its ancestors, so evicting least-recently-used blocks with a
// reference count of 1 never orphans a block some sequence still uses).
#pragma once
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "model/kv_pool.h"

namespace whale {

class PrefixCache {
 public:
  explicit PrefixCache(KVPool& cache) : cache_(cache) {}
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The cached blocks holding the longest run of whole blocks at the start of `tokens`, at
  // most `max_blocks`. Each returned block is retained for the caller.
  std::vector<int32_t> match(std::span<const int32_t> tokens, int64_t max_blocks);

  // Indexes the first `n_blocks` whole blocks of a sequence (`tokens` in `blocks`); blocks
  // whose prefix is already cached are skipped (the sequence keeps its own copy).
  void insert(std::span<const int32_t> tokens, const std::vector<int32_t>& blocks, int64_t n_blocks);

  // Frees up to n blocks that only the cache references, least recently used first, deepest
  // first among equals. Returns how many were freed.
  int64_t evict(int64_t n);

  int64_t evictable() const;  // blocks referenced only by the cache
  int64_t size() const { return int64_t(nodes_.size()); }

 private:
  struct Node {
    uint64_t parent;
    std::vector<int32_t> tokens;  // the block's tokens, compared on lookup (hash collisions miss)
    int32_t block;
    int32_t children = 0;
    uint64_t last_used = 0;
  };
  static uint64_t key(uint64_t parent, std::span<const int32_t> tokens);

  KVPool& cache_;
  std::unordered_map<uint64_t, Node> nodes_;
  uint64_t clock_ = 0;
};

}  // namespace whale
