// Writes safetensors files: the same layout Hugging Face's `safetensors` produces (header
// padded with spaces to a multiple of 8 bytes, tensors in name order, no gaps).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace whale {

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian element data, numel · dtype_size bytes
};

struct TensorHeader {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t nbytes() const;
};

// Streams tensors to disk one at a time, in the order given: fill(i, buf) writes the
// headers[i].nbytes() bytes of tensor i. Memory use is one tensor, whatever the file size.
void write_safetensors_streaming(const std::string& path, const std::vector<TensorHeader>& headers,
                                 const std::function<void(size_t, uint8_t*)>& fill,
                                 const std::map<std::string, std::string>& metadata = {});

// Writes atomically (temporary file + rename), so an interrupted write never leaves a
// truncated file under the final name.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Convenience constructors.
TensorToWrite tensor_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);
TensorToWrite tensor_bf16(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);

}  // namespace whale
