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
  int64_t n = 0;
  for (const auto& [k, node] : nodes_) n += cache_.ref_count(node.block) == 1;
  return n;
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
