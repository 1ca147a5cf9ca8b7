// Writes safetensors files: the same layout Hugging Face's `safetensors` produces (header
// padded with spaces to a multiple of 8 bytes, tensors in name order, no gaps).
#pragma once
#include <cstdint>
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

// Writes atomically (temporary file + rename), so an interrupted write never leaves a
// truncated file under the final name.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Convenience constructors.
TensorToWrite tensor_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);
TensorToWrite tensor_bf16(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);

}  // namespace whale
