// A named tensor living inside a mapped file (safetensors or GGUF): type, shape and a pointer
// into the mapping. Nothing is copied.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace whale {

struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // outermost first, as in PyTorch: a linear weight is [out, in]
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // the file it came from, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[576, 7168]"

}  // namespace whale
