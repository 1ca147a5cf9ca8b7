// The KV-cache interface the scheduler talks to, and its first implementation.
//
// The scheduler never touches cache memory: it asks the manager for room (reserve), gives
// it back (truncate, release), shares it (fork, prefix cache) and reads counters. The model
// runner hands the manager's pools to the forward pass. What a block holds is the model's
// business (CacheGroupSpec, one pool per group); how blocks are placed, shared, evicted or
// moved to another tier is the manager's. A RAM or SSD tier, or caches of new kinds, are new
// implementations or new groups behind this interface, not changes to the scheduler.
//
// Block ids are shared by every group: block b of a sequence is the slot b in each group's
// pool, allocated and reference-counted once (in the first group's pool). So one block table
// (SeqCache) describes a sequence in every group, and a prefix-cache entry is one id.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/kv_pool.h"
#include "runtime/prefix_cache.h"

namespace whale {

struct KVCacheStats {
  int64_t blocks_total = 0;      // per group
  int64_t blocks_free = 0;       // allocatable now, evictable prefix blocks included
  int64_t prefix_blocks = 0;     // blocks indexed by the prefix cache
  size_t bytes_per_block = 0;    // over all groups
};

class KVCacheManager {
 public:
  virtual ~KVCacheManager() = default;

  virtual const std::vector<CacheGroupSpec>& groups() const = 0;
  virtual int64_t block_tokens() const = 0;   // tokens per block: the unit of allocation and of reuse
  virtual int64_t total_blocks() const = 0;
  virtual int64_t available_blocks() const = 0;  // free now + held only by the prefix cache

  // Room for `n_more` tokens after seq.length (the forward pass advances the length).
  // Evicts unused prefix blocks when needed; false, with nothing allocated, when memory is short.
  virtual bool reserve(SeqCache& seq, int64_t n_more) = 0;
  virtual void truncate(SeqCache& seq, int64_t n_tokens) = 0;  // keeps the first n tokens
  virtual void release(SeqCache& seq) = 0;                     // every block given back
  // `dst` (empty) becomes a copy of `src`: whole blocks shared, the partly filled last block
  // copied, so both may grow independently (a shared block is never written again).
  virtual bool fork(const SeqCache& src, SeqCache& dst) = 0;

  // Prefix cache. match_prefix installs in `seq` (empty) the cached blocks holding the longest
  // run of whole blocks at the start of `tokens`, at most `max_blocks`, and returns how many
  // tokens they hold. commit_prefix offers the first `n_blocks` whole blocks of `seq`, which
  // hold `tokens`, to later requests. Both do nothing without a prefix cache.
  virtual int64_t match_prefix(std::span<const int32_t> tokens, int64_t max_blocks, SeqCache& seq) = 0;
  virtual void commit_prefix(std::span<const int32_t> tokens, const SeqCache& seq, int64_t n_blocks) = 0;

  // A block's bytes in every group (group after group), for other tiers and persistence.
  virtual size_t block_bytes() const = 0;
  virtual void export_block(int32_t block, std::span<std::byte> out) const = 0;
  virtual void import_block(int32_t block, std::span<const std::byte> in) = 0;

  virtual KVPool& pool(size_t group) = 0;  // group's storage, for the forward pass
  virtual KVCacheStats stats() const = 0;
};

// One in-memory pool per group, all with the same number of blocks, and an optional prefix
// index (LRU-evicted when memory is needed).
class PagedKVCache final : public KVCacheManager {
 public:
  PagedKVCache(std::vector<CacheGroupSpec> groups, int64_t block_tokens, int64_t n_blocks, bool prefix_cache);
  ~PagedKVCache() override;

  const std::vector<CacheGroupSpec>& groups() const override { return groups_; }
  int64_t block_tokens() const override { return block_tokens_; }
  int64_t total_blocks() const override { return pools_[0]->n_blocks(); }
  int64_t available_blocks() const override;
  bool reserve(SeqCache& seq, int64_t n_more) override;
  void truncate(SeqCache& seq, int64_t n_tokens) override;
  void release(SeqCache& seq) override;
  bool fork(const SeqCache& src, SeqCache& dst) override;
  int64_t match_prefix(std::span<const int32_t> tokens, int64_t max_blocks, SeqCache& seq) override;
  void commit_prefix(std::span<const int32_t> tokens, const SeqCache& seq, int64_t n_blocks) override;
  size_t block_bytes() const override;
  void export_block(int32_t block, std::span<std::byte> out) const override;
  void import_block(int32_t block, std::span<const std::byte> in) override;
  KVPool& pool(size_t group) override { return *pools_[group]; }
  KVCacheStats stats() const override;

 private:
  int32_t allocate();  // evicts a prefix block if the pool is empty; -1 if nothing can be freed
  KVPool& ids() { return *pools_[0]; }  // the pool whose allocator hands out the shared ids
  const KVPool& ids() const { return *pools_[0]; }

  std::vector<CacheGroupSpec> groups_;
  int64_t block_tokens_;
  std::vector<std::unique_ptr<KVPool>> pools_;
  std::unique_ptr<PrefixCache> prefix_;
};

}  // namespace whale
