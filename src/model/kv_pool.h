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
// moved between tiers as one unit. A windowed group (values only the last `window` tokens of a
// sequence are read for: DeepSeek-V4's sliding-window kv and compressor inputs) is the
// exception: its storage is a smaller set of window slots that a block holds only while some
// sequence's window covers it, or until the slot is needed again (vLLM's sliding-window blocks).
// Which blocks a sequence owns is decided above the model (runtime/kv_cache.h); the pool
// only counts references.
#pragma once
#include <cstdint>
#include <algorithm>
#include <list>
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
  // Tokens before a step's first position the forward pass reads (0: all of them). A windowed
  // group's values are kept only for a sequence's last blocks (KVPool's window slots).
  int64_t window = 0;
};

// Refuses a pool of `bytes` (room for `tokens` tokens) that the machine's memory cannot hold:
// at most `available` (MemAvailable; 0 = unknown, no check) less a reserve of an eighth or at
// least 1 GiB. The pool's memory is only touched as it fills, so without this a context that does
// not fit would end in an out-of-memory kill mid-request instead of an error at start.
void check_kv_memory(size_t bytes, int64_t tokens, size_t available);

// The blocks of every group of a model's cache. Block ids are shared by the groups: block b
// is the slot b in each group's storage, allocated and reference-counted once. Windowed groups
// instead store block b in window slot window_slot(b), one slot for all of them: a block has
// its windowed values in every windowed group or in none. A slot is held by the sequences whose
// window covers the block (hold_window); a slot nobody holds keeps its values (a later prefix
// hit may need them) until allocate() takes it for a new block, least recently released first.
class KVPool {
 public:
  // `window_slots`: storage of the windowed groups in blocks (0: n_blocks, as if unwindowed).
  KVPool(std::vector<CacheGroupSpec> groups, int64_t block_size, int64_t n_blocks, int64_t window_slots = 0);
  KVPool(int64_t n_layers, int64_t dim, int64_t block_size, int64_t n_blocks);  // one "mla_latent" group

  const std::vector<CacheGroupSpec>& groups() const { return groups_; }
  int64_t n_layers(size_t group = 0) const { return groups_[group].n_layers; }
  int64_t dim(size_t group = 0) const { return groups_[group].dim; }
  int64_t block_size() const { return block_size_; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return int64_t(free_.size()); }

  // A block with reference count 1 and, with `window` and windowed groups, a window slot that
  // the caller holds (taking the least recently released unheld slot when none is free); -1
  // when there is no free block or no slot to take.
  int32_t allocate(bool window = true);
  void retain(int32_t block);
  void release(int32_t block);  // returns the block (and its window slot) when its count reaches 0
  int32_t ref_count(int32_t block) const { return refs_[size_t(block)]; }

  // Windows. window(): the longest window of the groups (0: none). A sequence of `length`
  // tokens reads windowed values of its blocks from window_start(length) on (the window plus
  // one block of margin: the MTP module and rejected drafts read a few positions earlier).
  int64_t window() const { return window_; }
  bool windowed(size_t group) const { return groups_[group].window > 0; }
  int64_t window_start(int64_t length) const {
    return window_ == 0 ? 0 : std::max<int64_t>(0, (length - window_) / block_size_ - 1);
  }
  bool has_window(int32_t block) const { return window_ == 0 || wslot_[size_t(block)] >= 0; }
  int64_t free_window_slots() const { return window_ == 0 ? n_blocks_ : int64_t(wfree_.size() + wlru_.size()); }
  int64_t window_slots() const { return n_wslots_; }
  void hold_window(int32_t block);    // the block must have its window slot
  void unhold_window(int32_t block);  // the last holder leaves it reusable (values kept until then)
  void drop_window(int32_t block);    // gives the slot back now (its values are void); unheld only

  // Layout of a group's block: [n_layers][entries_per_block(group)][dim] float32; `offset` is
  // the token (stride 1) or entry index within the block.
  float* slot(int32_t block, int64_t layer, int64_t offset, size_t group = 0) {
    const CacheGroupSpec& g = groups_[group];
    const int64_t at = g.window > 0 ? window_slot(block) : block;
    return data_[group].get() + ((at * g.n_layers + layer) * entries_[group] + offset) * g.dim;
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
  int64_t window_slot(int32_t block) const;  // fails on a block without one: its values are gone

  std::vector<CacheGroupSpec> groups_;
  int64_t block_size_, n_blocks_, n_wslots_, window_ = 0;
  std::vector<std::unique_ptr<float[]>> data_;  // per group, uninitialised: pages are touched only when used
  std::vector<int64_t> entries_;                 // per group: entries per block
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;
  // Window slots: per block its slot (-1: none) and holders; free slots; unheld slots with their
  // values, least recently released first (wlru_at_: a block's place in it).
  std::vector<int32_t> wslot_, wholders_, wfree_;
  std::list<int32_t> wlru_;
  std::vector<std::list<int32_t>::iterator> wlru_at_;
};

// The largest m <= n such that a sequence of the first m of `blocks` (m whole blocks) finds the
// windowed values it reads (KVPool::window_start on) in every one of them.
int64_t usable_blocks(const KVPool& cache, const std::vector<int32_t>& blocks, int64_t n);

// One sequence's view of a pool: its block table and how many tokens it holds. It holds the
// window slots of blocks[window_from..] (all of them on a pool without windowed groups).
struct SeqCache {
  std::vector<int32_t> blocks;
  int64_t length = 0;
  int64_t window_from = 0;

  // Makes room for n_more tokens (first letting go of the windows it no longer reads); false
  // (and nothing allocated) if the pool is too small.
  bool reserve(KVPool& cache, int64_t n_more);
  void clear(KVPool& cache);  // releases every block
  // Keeps the first n tokens, releasing blocks past them. Fewer (whole blocks) remain when the
  // windowed values the first n tokens need were given up: the longest prefix that has them.
  void truncate(KVPool& cache, int64_t n);
  // Holds the windows of blocks [window_start(length), window_from) that are not held yet;
  // false when one of them is gone (then nothing changes).
  bool hold_windows(KVPool& cache);
  void slide(KVPool& cache);  // lets go of the windows before window_start(length)
  // For whole blocks put in `blocks` whose windows it does not hold yet (window_from ==
  // blocks.size()): keeps the longest prefix of at most max_blocks that has its windows, and
  // holds them; length becomes its tokens.
  void adopt(KVPool& cache, int64_t max_blocks);
  void unhold_all(KVPool& cache);  // lets go of every window it holds (window_from = blocks.size())
  void pop_to(KVPool& cache, int64_t keep);  // releases the blocks past the first `keep` (length unchanged)
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
