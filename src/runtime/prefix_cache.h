// Prefix cache over KV blocks: whole blocks of tokens, indexed by their content address
// (block_key.h: a SHA-256 chain over the model and the tokens up to and including the
// block), so any request whose prompt starts with the same tokens reuses their cache
// entries instead of recomputing them.
//
// The cache holds one reference on every block it indexes. A block whose only reference
// is the cache's, and whose descendants are all in the same case, is evictable; blocks in use
// (by a sequence, or pinned while the KV store copies them) are not, nor are their ancestors:
// eviction takes least-recently-used leaves, so it never orphans a block still in use.
#pragma once
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "model/kv_pool.h"
#include "runtime/block_key.h"

namespace whale {

class PrefixCache {
 public:
  PrefixCache(KVPool& cache, const BlockKey& root) : cache_(cache), root_(root) {}
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The cached blocks of the longest run of `keys` (a sequence's block keys, from the first).
  // Each returned block is retained for the caller.
  std::vector<int32_t> match(std::span<const BlockKey> keys);

  // Indexes a sequence's first blocks (`keys[i]` held in `blocks[i]`). Blocks already indexed
  // are skipped (the sequence keeps its own copy). Returns the indexes (into keys) of the
  // blocks added.
  std::vector<int64_t> insert(std::span<const BlockKey> keys, const std::vector<int32_t>& blocks);

  // Frees up to n blocks that only the cache references, least recently used first, deepest
  // first among equals. Returns how many were freed.
  int64_t evict(int64_t n);

  int64_t evictable() const;  // blocks evict() can free now
  int64_t size() const { return int64_t(nodes_.size()); }
  const BlockKey& root() const { return root_; }

 private:
  struct Node {
    BlockKey parent;
    int32_t block;
    int32_t children = 0;
    uint64_t last_used = 0;
  };

  KVPool& cache_;
  BlockKey root_;
  std::unordered_map<BlockKey, Node, DigestHash> nodes_;
  uint64_t clock_ = 0;
};

}  // namespace whale
