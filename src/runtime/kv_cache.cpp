#include "runtime/kv_cache.h"

#include <cstring>

#include "core/error.h"

namespace whale {

PagedKVCache::PagedKVCache(std::vector<CacheGroupSpec> groups, int64_t block_tokens, int64_t n_blocks, bool prefix_cache)
    : groups_(std::move(groups)), block_tokens_(block_tokens) {
  WHALE_CHECK(!groups_.empty(), "KV cache: a model with no cache groups");
  WHALE_CHECK(block_tokens > 0 && n_blocks > 0, "KV cache: invalid geometry");
  for (const CacheGroupSpec& g : groups_) pools_.push_back(std::make_unique<KVPool>(g.n_layers, g.dim, block_tokens, n_blocks));
  if (prefix_cache) prefix_ = std::make_unique<PrefixCache>(ids());
}

PagedKVCache::~PagedKVCache() { prefix_.reset(); }  // the index releases its blocks first

int64_t PagedKVCache::available_blocks() const { return ids().free_blocks() + (prefix_ ? prefix_->evictable() : 0); }

int32_t PagedKVCache::allocate() {
  if (ids().free_blocks() == 0 && prefix_) prefix_->evict(1);
  return ids().allocate();
}

bool PagedKVCache::reserve(SeqCache& seq, int64_t n_more) {
  const int64_t need = (seq.length + n_more + block_tokens_ - 1) / block_tokens_ - int64_t(seq.blocks.size());
  if (need <= 0) return true;
  if (need > available_blocks()) return false;
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
  if (partial && available_blocks() < 1) return false;
  for (int64_t i = 0; i < whole; ++i) {
    ids().retain(src.blocks[size_t(i)]);
    dst.blocks.push_back(src.blocks[size_t(i)]);
  }
  if (partial) {
    const int32_t b = allocate();
    const int32_t from = src.blocks[size_t(whole)];
    for (auto& p : pools_) std::memcpy(p->block_data(b), p->block_data(from), p->bytes_per_block());
    dst.blocks.push_back(b);
  }
  dst.length = src.length;
  return true;
}

int64_t PagedKVCache::match_prefix(std::span<const int32_t> tokens, int64_t max_blocks, SeqCache& seq) {
  WHALE_CHECK(seq.blocks.empty(), "match_prefix: the sequence already holds blocks");
  if (!prefix_) return 0;
  seq.blocks = prefix_->match(tokens, max_blocks);
  seq.length = int64_t(seq.blocks.size()) * block_tokens_;
  return seq.length;
}

void PagedKVCache::commit_prefix(std::span<const int32_t> tokens, const SeqCache& seq, int64_t n_blocks) {
  if (prefix_) prefix_->insert(tokens, seq.blocks, n_blocks);
}

size_t PagedKVCache::block_bytes() const {
  size_t n = 0;
  for (const auto& p : pools_) n += p->bytes_per_block();
  return n;
}

void PagedKVCache::export_block(int32_t block, std::span<std::byte> out) const {
  WHALE_CHECK(out.size() == block_bytes(), "export_block: ", out.size(), " bytes given for a block of ", block_bytes());
  WHALE_CHECK(block >= 0 && block < total_blocks() && ids().ref_count(block) > 0, "export_block: block ", block, " is not in use");
  size_t at = 0;
  for (const auto& p : pools_) {
    std::memcpy(out.data() + at, p->block_data(block), p->bytes_per_block());
    at += p->bytes_per_block();
  }
}

void PagedKVCache::import_block(int32_t block, std::span<const std::byte> in) {
  WHALE_CHECK(in.size() == block_bytes(), "import_block: ", in.size(), " bytes given for a block of ", block_bytes());
  WHALE_CHECK(block >= 0 && block < total_blocks() && ids().ref_count(block) == 1,
              "import_block: block ", block, " must be held by exactly one sequence");
  size_t at = 0;
  for (auto& p : pools_) {
    std::memcpy(p->block_data(block), in.data() + at, p->bytes_per_block());
    at += p->bytes_per_block();
  }
}

KVCacheStats PagedKVCache::stats() const {
  return {total_blocks(), available_blocks(), prefix_ ? prefix_->size() : 0, block_bytes()};
}

}  // namespace whale
