#include "runtime/prefix_cache.h"

#include <algorithm>

namespace whale {

namespace {
constexpr uint64_t kRoot = 0x9e3779b97f4a7c15ull;
}

PrefixCache::~PrefixCache() {
  for (auto& [k, n] : nodes_) cache_.release(n.block);
}

// FNV-1a over the parent key and the token ids; keys are only hints (tokens are compared).
uint64_t PrefixCache::key(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int32_t t : tokens) mix(uint32_t(t));
  return h == kRoot ? h + 1 : h;
}

std::vector<int32_t> PrefixCache::match(std::span<const int32_t> tokens, int64_t max_blocks) {
  const int64_t bs = cache_.block_size();
  std::vector<int32_t> out;
  uint64_t parent = kRoot;
  ++clock_;
  for (int64_t b = 0; b < max_blocks && (b + 1) * bs <= int64_t(tokens.size()); ++b) {
    auto piece = tokens.subspan(size_t(b * bs), size_t(bs));
    const uint64_t k = key(parent, piece);
    auto it = nodes_.find(k);
    if (it == nodes_.end() || it->second.parent != parent || !std::equal(piece.begin(), piece.end(), it->second.tokens.begin()))
      break;
    it->second.last_used = clock_;
    cache_.retain(it->second.block);
    out.push_back(it->second.block);
    parent = k;
  }
  return out;
}

void PrefixCache::insert(std::span<const int32_t> tokens, const std::vector<int32_t>& blocks, int64_t n_blocks) {
  const int64_t bs = cache_.block_size();
  n_blocks = std::min({n_blocks, int64_t(blocks.size()), int64_t(tokens.size()) / bs});
  uint64_t parent = kRoot;
  ++clock_;
  for (int64_t b = 0; b < n_blocks; ++b) {
    auto piece = tokens.subspan(size_t(b * bs), size_t(bs));
    const uint64_t k = key(parent, piece);
    auto it = nodes_.find(k);
    if (it == nodes_.end()) {
      cache_.retain(blocks[size_t(b)]);
      nodes_.emplace(k, Node{parent, std::vector<int32_t>(piece.begin(), piece.end()), blocks[size_t(b)], 0, clock_});
      if (parent != kRoot) ++nodes_.at(parent).children;
    } else if (it->second.parent != parent || !std::equal(piece.begin(), piece.end(), it->second.tokens.begin())) {
      return;  // a hash collision: leave the existing entry alone and stop here
    } else {
      it->second.last_used = clock_;
    }
    parent = k;
  }
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
    if (victim->second.parent != kRoot) --nodes_.at(victim->second.parent).children;
    cache_.release(victim->second.block);
    nodes_.erase(victim);
    ++freed;
  }
  return freed;
}

}  // namespace whale
