// A 2-D weight matrix W [rows = out features, cols = in features] kept in its stored type.
// Kernels convert on the fly; a model never holds an expanded f32 copy of its weights.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace whale {

struct Weight {
  DType dtype = DType::F32;  // F32, F16, BF16, F8_E4M3 or F4_E2M1
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;  // row-major, rows * cols elements
  // FP8 and FP4: one f32 scale per [block_rows x block_cols] tile ("weight_scale_inv"; FP4: 1 x 32),
  // W_real[r][c] = W[r][c] * scale[(r / block_rows) * scale_cols + c / block_cols].
  // Edge tiles may be smaller than the block.
  const float* scale = nullptr;
  int64_t block_rows = 128, block_cols = 128, scale_cols = 0;

  bool empty() const { return data == nullptr; }
  size_t row_bytes() const { return dtype_row_bytes(dtype, cols); }
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_bytes(); }
  // Bytes a full pass over the matrix reads (weights + scales): the decode roofline's unit.
  size_t bytes() const;
};

// Owned storage for the rare tensors that must be converted or realigned at load time
// (norm vectors, scales in other dtypes, misaligned data). Keeps the bytes alive.
struct OwnedBuffers {
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<uint8_t>> raw;
};

}  // namespace whale
