// The storage the forward pass reads and writes its attention caches in.
//
// A model declares its caches as groups (CacheGroupSpec): one kind of per-layer cache with
// its own geometry. DeepSeek-V2/V3/R2 have one group, the MLA latents: per token and layer
// only the compressed latent c_kv (kv_lora_rank values, after kv_a_layernorm) and the shared
// rotary key k_pe (qk_rope_head_dim values, after RoPE), 576 values for V2/V3, never the
// decompressed per-head keys and values. Later kinds (sliding windows, compressed entries,
// indexer keys) are further groups with their own dims and layer counts.
//
// The cache's memory is a pool of fixed-size blocks of `block_size` tokens; a block holds those
// tokens for every layer of every group, so it can be shared (prefix cache), copied (fork) or
// moved between tiers as one unit.
// Which blocks a sequence owns is decided above the model (runtime/kv_cache.h); the pool
// only counts references.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace whale {

struct CacheGroupSpec {
  std::string kind;      // "mla_latent", "index_key", ...: names what the values mean (and block keys)
  int64_t n_layers = 0;  // layers stored per block (the MTP module's latents as one more)
  int64_t dim = 0;       // float32 values per entry and layer
  // Tokens per entry: 1 for per-token values; m for one entry per window of m tokens (DeepSeek-V4's
  // compressed entries). Entry j belongs to the block of token (j+1)·m − 1, the token that
  // completes it, so a block's entries depend only on its own and earlier tokens. The stride
  // and the block size must divide one another.
  int64_t stride = 1;
};

// Refuses a pool of `bytes` (room for `tokens` tokens) that the machine's memory cannot hold:
// at most `available` (MemAvailable; 0 = unknown, no check) less a reserve of an eighth or at
// least 1 GiB. The pool's memory is only touched as it fills, so without this a context that does
// not fit would end in an out-of-memory kill mid-request instead of an error at start.
void check_kv_memory(size_t bytes, int64_t tokens, size_t available);

// The blocks of every group of a model's cache. Block ids are shared by the groups: block b
// is the slot b in each group's storage, allocated and reference-counted once.
class KVPool {
 public:
  KVPool(std::vector<CacheGroupSpec> groups, int64_t block_size, int64_t n_blocks);
  KVPool(int64_t n_layers, int64_t dim, int64_t block_size, int64_t n_blocks);  // one "mla_latent" group

  const std::vector<CacheGroupSpec>& groups() const { return groups_; }
  int64_t n_layers(size_t group = 0) const { return groups_[group].n_layers; }
  int64_t dim(size_t group = 0) const { return groups_[group].dim; }
  int64_t block_size() const { return block_size_; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return int64_t(free_.size()); }

  int32_t allocate();  // a block with reference count 1, or -1 when the pool is exhausted
  void retain(int32_t block);
  void release(int32_t block);  // returns the block to the pool when its count reaches 0
  int32_t ref_count(int32_t block) const { return refs_[size_t(block)]; }

  // Layout of a group's block: [n_layers][entries_per_block(group)][dim] float32; `offset` is
  // the token (stride 1) or entry index within the block.
  float* slot(int32_t block, int64_t layer, int64_t offset, size_t group = 0) {
    const CacheGroupSpec& g = groups_[group];
    return data_[group].get() + ((int64_t(block) * g.n_layers + layer) * entries_[group] + offset) * g.dim;
  }
  int64_t entries_per_block(size_t group) const { return entries_[group]; }
  const float* slot(int32_t block, int64_t layer, int64_t offset, size_t group = 0) const {
    return const_cast<KVPool*>(this)->slot(block, layer, offset, group);
  }
  float* block_data(int32_t block, size_t group) { return slot(block, 0, 0, group); }  // group_bytes(group) bytes
  const float* block_data(int32_t block, size_t group) const { return slot(block, 0, 0, group); }
  size_t group_bytes(size_t group) const {
    return size_t(groups_[group].n_layers * entries_[group] * groups_[group].dim) * sizeof(float);
  }
  size_t bytes_per_block() const;  // over all groups

 private:
  std::vector<CacheGroupSpec> groups_;
  int64_t block_size_, n_blocks_;
  std::vector<std::unique_ptr<float[]>> data_;  // per group, uninitialised: pages are touched only when used
  std::vector<int64_t> entries_;                 // per group: entries per block
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;
};

// One sequence's view of a pool: its block table and how many tokens it holds.
struct SeqCache {
  std::vector<int32_t> blocks;
  int64_t length = 0;

  // Makes room for n_more tokens; false (and nothing allocated) if the pool is too small.
  bool reserve(KVPool& cache, int64_t n_more);
  void clear(KVPool& cache);  // releases every block
  void truncate(KVPool& cache, int64_t n);  // keeps the first n tokens, releasing blocks past them
  float* slot(KVPool& cache, int64_t layer, int64_t pos, size_t group = 0) {
    return cache.slot(blocks[size_t(pos / cache.block_size())], layer, pos % cache.block_size(), group);
  }
  const float* slot(const KVPool& cache, int64_t layer, int64_t pos, size_t group = 0) const {
    return cache.slot(blocks[size_t(pos / cache.block_size())], layer, pos % cache.block_size(), group);
  }
  // Entry j of a strided group (CacheGroupSpec::stride), in the block of the token completing it.
  float* entry(KVPool& cache, int64_t layer, int64_t j, size_t group) {
    const int64_t m = cache.groups()[group].stride, p = (j + 1) * m - 1, bs = cache.block_size();
    return cache.slot(blocks[size_t(p / bs)], layer, m >= bs ? 0 : (p % bs) / m, group);
  }
  const float* entry(const KVPool& cache, int64_t layer, int64_t j, size_t group) const {
    return const_cast<SeqCache*>(this)->entry(const_cast<KVPool&>(cache), layer, j, group);
  }
};

}  // namespace whale
