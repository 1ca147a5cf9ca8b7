#include "runtime/prefix_cache.h"

#include <algorithm>

namespace whale {

PrefixCache::~PrefixCache() {
  for (auto& [k, n] : nodes_) cache_.release(n.block);
}

std::vector<int32_t> PrefixCache::match(std::span<const BlockKey> keys) {
  std::vector<int32_t> out;
  ++clock_;
  for (const BlockKey& k : keys) {
    auto it = nodes_.find(k);
    if (it == nodes_.end()) break;
    it->second.last_used = clock_;
    cache_.retain(it->second.block);
    out.push_back(it->second.block);
  }
  return out;
}

std::vector<int64_t> PrefixCache::insert(std::span<const BlockKey> keys, const std::vector<int32_t>& blocks) {
  std::vector<int64_t> added;
  const size_t n = std::min(keys.size(), blocks.size());
  ++clock_;
  for (size_t b = 0; b < n; ++b) {
    auto it = nodes_.find(keys[b]);
    if (it == nodes_.end()) {
      const BlockKey& parent = b == 0 ? root_ : keys[b - 1];
      cache_.retain(blocks[b]);
      nodes_.emplace(keys[b], Node{parent, blocks[b], 0, clock_});
      if (b > 0) ++nodes_.at(parent).children;
      added.push_back(int64_t(b));
    } else {
      it->second.last_used = clock_;
    }
  }
  return added;
}

int64_t PrefixCache::evictable() const {
  // A block can go once everything below it can: it and all its descendants are referenced by
  // the cache alone. A block held elsewhere (by a sequence, or pinned while the KV store copies
  // it) keeps itself and its ancestors.
  std::unordered_map<BlockKey, bool, DigestHash> kept;
  for (const auto& [k, node] : nodes_) {
    if (cache_.ref_count(node.block) == 1) continue;
    for (const BlockKey* at = &k; *at != root_;) {
      auto [it, fresh] = kept.emplace(*at, true);
      if (!fresh) break;
      at = &nodes_.at(*at).parent;
    }
  }
  return int64_t(nodes_.size() - kept.size());
}

int64_t PrefixCache::evict(int64_t n) {
  int64_t freed = 0;
  while (freed < n) {
    auto victim = nodes_.end();
    for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
      const Node& c = it->second;
      if (c.children != 0 || cache_.ref_count(c.block) != 1) continue;
      if (victim == nodes_.end() || c.last_used < victim->second.last_used) victim = it;
    }
    if (victim == nodes_.end()) break;
    if (victim->second.parent != root_) --nodes_.at(victim->second.parent).children;
    cache_.release(victim->second.block);
    nodes_.erase(victim);
    ++freed;
  }
  return freed;
}

}  // namespace whale
