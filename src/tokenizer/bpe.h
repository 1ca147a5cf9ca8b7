// The BPE model of a byte-level tokenizer: vocabulary entries and merges as raw bytes
// (the GPT-2 byte-to-unicode mapping of tokenizer.json is undone at load).
#pragma once
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace whale {

class BpeModel {
 public:
  // vocab: byte string -> id; merges: (left, right) byte strings in rank order.
  BpeModel(std::unordered_map<std::string, int32_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges, const std::string& source);

  // Appends the ids of one pre-tokenized piece (raw bytes).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  int32_t id_of(std::string_view bytes) const;  // -1 if absent
  const std::string& bytes_of(int32_t id) const { return id_to_bytes_[size_t(id)]; }
  bool has_id(int32_t id) const { return id >= 0 && size_t(id) < id_to_bytes_.size() && has_[size_t(id)]; }
  int32_t max_id() const { return int32_t(id_to_bytes_.size()) - 1; }

 private:
  void merge(std::string_view piece, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_bytes_;
  std::vector<bool> has_;
  int32_t byte_id_[256];
  // (left id << 32 | right id) -> (rank << 32 | merged id)
  std::unordered_map<uint64_t, uint64_t> merges_;
  bool ignore_merges_;

  // Piece -> ids cache: text repeats words, and a lookup is far cheaper than merging.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace whale
