#include "tokenizer/bpe.h"

#include <limits>

#include "core/error.h"

namespace whale {

namespace {
constexpr size_t kMaxCachedPiece = 64;
constexpr size_t kMaxCacheEntries = 1 << 18;
uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
}  // namespace

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
                   const std::string& source)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
  int32_t max_id = -1;
  for (const auto& [bytes, id] : vocab_) {
    if (id < 0) fail(source, ": negative id ", id, " in vocabulary");
    max_id = std::max(max_id, id);
  }
  if (max_id >= (1 << 24)) fail(source, ": vocabulary id ", max_id, " is implausibly large");
  id_to_bytes_.resize(size_t(max_id + 1));
  has_.assign(size_t(max_id + 1), false);
  for (const auto& [bytes, id] : vocab_) {
    id_to_bytes_[size_t(id)] = bytes;
    has_[size_t(id)] = true;
  }
  for (int b = 0; b < 256; ++b) {
    byte_id_[b] = id_of(std::string(1, char(b)));
  }
  merges_.reserve(merges.size() * 2);
  uint32_t rank = 0;
  for (const auto& [left, right] : merges) {
    const int32_t l = id_of(left), r = id_of(right), m = id_of(left + right);
    if (l < 0 || r < 0 || m < 0) fail(source, ": merge rank ", rank, " refers to tokens missing from the vocabulary");
    merges_.emplace(pair_key(l, r), (uint64_t(rank) << 32) | uint32_t(m));  // first (lowest) rank wins
    ++rank;
  }
}

int32_t BpeModel::id_of(std::string_view bytes) const {
  auto it = vocab_.find(std::string(bytes));
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (piece.size() == 1 && byte_id_[static_cast<unsigned char>(piece[0])] >= 0) {
    out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (piece.size() <= kMaxCachedPiece) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(std::string(piece));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge(piece, out);
  if (piece.size() <= kMaxCachedPiece) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(piece), std::vector<int32_t>(out.begin() + long(start), out.end()));
  }
}

// Classic BPE: start from single bytes, repeatedly merge the adjacent pair of lowest rank
// (leftmost on ties), as HF tokenizers' word merge does.
void BpeModel::merge(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    const int32_t whole = id_of(piece);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(piece.size());
  for (unsigned char b : piece) {
    const int32_t id = byte_id_[b];
    if (id < 0) fail("tokenizer: byte 0x", std::hex, int(b), " has no token (not a byte-level vocabulary)");
    ids.push_back(id);
  }
  // For each position the rank of merging it with its right neighbour (UINT32_MAX: none).
  std::vector<uint64_t> merge_of(ids.size());
  auto lookup = [&](size_t i) -> uint64_t {
    if (i + 1 >= ids.size()) return std::numeric_limits<uint64_t>::max();
    auto it = merges_.find(pair_key(ids[i], ids[i + 1]));
    return it == merges_.end() ? std::numeric_limits<uint64_t>::max() : it->second;
  };
  for (size_t i = 0; i < ids.size(); ++i) merge_of[i] = lookup(i);
  for (;;) {
    size_t best = 0;
    uint64_t best_val = std::numeric_limits<uint64_t>::max();
    for (size_t i = 0; i + 1 < ids.size(); ++i)
      if ((merge_of[i] >> 32) < (best_val >> 32)) best = i, best_val = merge_of[i];
    if (best_val == std::numeric_limits<uint64_t>::max()) break;
    ids[best] = int32_t(best_val & 0xffffffffu);
    ids.erase(ids.begin() + long(best) + 1);
    merge_of.erase(merge_of.begin() + long(best) + 1);
    merge_of[best] = lookup(best);
    if (best > 0) merge_of[best - 1] = lookup(best - 1);
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace whale
