// The safetensors format: 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets}, then the raw little-endian data.
// A model directory holds one `model.safetensors`, or shards listed in
// `model.safetensors.index.json` ("weight_map": name -> file).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap.h"
#include "formats/tensor_ref.h"

namespace whale {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // byte offsets into the data section
};

// Parses and validates a header: known dtypes, sizes that match shapes, offsets inside
// data_bytes, no two tensors overlapping. `file` only names the culprit in errors.
std::vector<SafetensorsEntry> parse_safetensors_header(std::string_view header_json, uint64_t data_bytes,
                                                        const std::string& file);

// Validates a whole file image (length prefix + header + data) and returns its entries with
// offsets relative to the start of the image.
std::vector<SafetensorsEntry> parse_safetensors_image(const uint8_t* data, size_t size, const std::string& file);

// All tensors of a model directory (or of a single .safetensors file), memory-mapped.
class TensorSet {
 public:
  static std::unique_ptr<TensorSet> open(const std::string& path, LoadMode mode = LoadMode::kMap);
  // Tensors that live in some other container (a GGUF file), already renamed; `owner` keeps
  // their bytes alive and `file_bytes` is what the container occupies (`copied`: in memory of
  // its own rather than mapped).
  static std::unique_ptr<TensorSet> from_refs(const std::string& root, std::vector<TensorRef> refs,
                                              std::shared_ptr<const void> owner, size_t file_bytes, bool copied);

  const TensorRef* find(const std::string& name) const;
  const TensorRef& get(const std::string& name) const;  // throws, naming the tensor
  const std::map<std::string, TensorRef>& all() const { return tensors_; }
  size_t total_bytes() const;
  size_t copied_bytes() const;  // of total_bytes(): files copied into memory rather than mapped
  std::vector<std::string> files() const;
  const std::string& root() const { return root_; }

 private:
  std::string root_;
  void add_file(const std::string& path, const std::vector<std::string>* only, LoadMode mode);
  std::map<std::string, TensorRef> tensors_;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::shared_ptr<const void> owner_;
  size_t owner_bytes_ = 0;
  bool owner_copied_ = false;
};

}  // namespace whale
