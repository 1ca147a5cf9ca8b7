// The KV-cache interface the scheduler talks to, and its first implementation.
//
// The scheduler never touches cache memory: it asks the manager for room (reserve), gives
// it back (truncate, release), shares it (fork, prefix cache) and reads counters. The model
// runner hands the manager's pools to the forward pass. What a block holds is the model's
// business (CacheGroupSpec, one pool per group); how blocks are placed, shared, evicted or
// moved to another tier is the manager's. A RAM or SSD tier, or caches of new kinds, are new
// implementations or new groups behind this interface, not changes to the scheduler.
//
// Below the pool, an optional KVStore (kv_store.h) adds a RAM and a disk tier: blocks the
// prefix cache indexes are written through to it, and admission loads a prompt's further
// blocks from it (start_load / finish_load) while other sequences keep running.
//
// Block ids are shared by every group: block b of a sequence is the slot b in each group's
// storage, allocated and reference-counted once (KVPool). So one block table (SeqCache)
// describes a sequence in every group, and a prefix-cache entry is one id. Windowed groups
// (KVPool's window slots) keep a block's values only while they may be read: a prefix hit or a
// load counts only as far as the blocks before it still have theirs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/kv_pool.h"
#include "runtime/block_key.h"
#include "runtime/kv_store.h"
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

  // Lower tiers. lower_blocks: how many whole blocks of `tokens` after the first `from` (at
  // most max_blocks) the store holds, from block `from` on without a gap (0 without a store).
  // start_load allocates pool blocks for the next n blocks after `seq`'s (which holds whole
  // blocks only), appends them to seq.blocks (seq.length is unchanged) and loads them
  // asynchronously; on_done runs on the store's thread when the job is done. After that,
  // finish_load keeps the blocks that loaded intact (seq.length grows over them, and they
  // join the prefix cache) and releases the rest. prefetch brings blocks that are only on
  // disk into RAM ahead of a request's admission.
  virtual int64_t lower_blocks(std::span<const int32_t> tokens, int64_t from, int64_t max_blocks) = 0;
  virtual std::shared_ptr<LoadJob> start_load(std::span<const int32_t> tokens, SeqCache& seq, int64_t n,
                                              std::function<void()> on_done) = 0;
  virtual void finish_load(LoadJob& job, std::span<const int32_t> tokens, SeqCache& seq) = 0;
  virtual void prefetch(std::span<const int32_t> tokens, int64_t max_blocks) = 0;
  // Between steps: blocks the store has finished copying are unpinned.
  virtual void poll() = 0;
  virtual KVStore* store() = 0;  // null without lower tiers

  // A block's bytes in every group (group after group), for other tiers and persistence.
  virtual size_t block_bytes() const = 0;
  virtual void export_block(int32_t block, std::span<std::byte> out) const = 0;
  virtual void import_block(int32_t block, std::span<const std::byte> in) = 0;

  virtual KVPool& pool() = 0;  // every group's storage, for the forward pass
  virtual KVCacheStats stats() const = 0;
};

// One in-memory pool holding every group, and an optional prefix
// index (LRU-evicted when memory is needed).
class PagedKVCache final : public KVCacheManager {
 public:
  // `root`: the cache's key namespace (block_key.h); `store`: lower tiers, or null.
  // `key_lookahead`: keys cover the token after each block (block_key.h), for the MTP latents.
  // `window_slots`: blocks' worth of storage for the windowed groups (0: n_blocks).
  PagedKVCache(std::vector<CacheGroupSpec> groups, int64_t block_tokens, int64_t n_blocks, bool prefix_cache,
               const BlockKey& root = {}, std::shared_ptr<KVStore> store = nullptr, bool key_lookahead = false,
               int64_t window_slots = 0);
  ~PagedKVCache() override;

  const std::vector<CacheGroupSpec>& groups() const override { return groups_; }
  int64_t block_tokens() const override { return block_tokens_; }
  int64_t total_blocks() const override { return pool_->n_blocks(); }
  int64_t available_blocks() const override;
  bool reserve(SeqCache& seq, int64_t n_more) override;
  void truncate(SeqCache& seq, int64_t n_tokens) override;
  void release(SeqCache& seq) override;
  bool fork(const SeqCache& src, SeqCache& dst) override;
  int64_t match_prefix(std::span<const int32_t> tokens, int64_t max_blocks, SeqCache& seq) override;
  void commit_prefix(std::span<const int32_t> tokens, const SeqCache& seq, int64_t n_blocks) override;
  int64_t lower_blocks(std::span<const int32_t> tokens, int64_t from, int64_t max_blocks) override;
  std::shared_ptr<LoadJob> start_load(std::span<const int32_t> tokens, SeqCache& seq, int64_t n,
                                      std::function<void()> on_done) override;
  void finish_load(LoadJob& job, std::span<const int32_t> tokens, SeqCache& seq) override;
  void prefetch(std::span<const int32_t> tokens, int64_t max_blocks) override;
  void poll() override;
  KVStore* store() override { return store_.get(); }
  size_t block_bytes() const override;
  void export_block(int32_t block, std::span<std::byte> out) const override;
  void import_block(int32_t block, std::span<const std::byte> in) override;
  KVPool& pool() override { return *pool_; }
  KVCacheStats stats() const override;

 private:
  std::vector<BlockKey> keys(std::span<const int32_t> tokens, int64_t n_blocks) const;
  void index(std::span<const int32_t> tokens, const SeqCache& seq, int64_t n_blocks, bool write_through);
  // The block's bytes in each group, then a flag saying whether its windowed groups' are real
  // (with windowed groups only). Without its window (or `window` false), export gives zeros and a
  // load discards them.
  std::vector<std::span<const std::byte>> export_pieces(int32_t block, bool window = true) const;
  std::vector<std::span<std::byte>> import_pieces(int32_t block);
  int32_t allocate(bool window = true);  // evicts a prefix block if the pool is empty; -1 if nothing can be freed
  KVPool& ids() { return *pool_; }  // the allocator of the block ids
  const KVPool& ids() const { return *pool_; }

  std::vector<CacheGroupSpec> groups_;
  int64_t block_tokens_;
  std::unique_ptr<KVPool> pool_;
  std::unique_ptr<PrefixCache> prefix_;
  BlockKey root_;
  std::shared_ptr<KVStore> store_;
  bool lookahead_;
  struct Pinned {  // a block the store is copying (its window held too, when it has one)
    std::shared_ptr<StoreJob> job;
    int32_t block;
    bool window;
  };
  std::vector<Pinned> pinned_;
  // With windowed groups: zeros exported for a block without its window, the sink a load
  // writes such a block's windowed values to (one loader thread), the two flag values, and
  // per block the flag a load wrote.
  std::vector<std::byte> zeros_, discard_;
  uint64_t has_window_ = 1, no_window_ = 0;
  std::vector<uint64_t> loaded_window_;
};

}  // namespace whale
