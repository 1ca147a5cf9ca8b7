// AMX (Advanced Matrix Extensions: Sapphire Rapids and later Xeons) int8 products of Q8_0
// weights with int8 activations, for prompt processing: the weights are repacked once into the
// tiles' layout, the activations are quantized per block of 32 as for the VNNI kernels
// (quantize_act_planar), and each block's 16×16 int32 products are scaled into float sums.
//
// An element's value depends only on its weight row and its token (its blocks are summed in
// order, one block at a time), never on how many tokens are computed together, so a prompt gives
// the same numbers whether its tokens come in one chunk or many, alone or beside other requests.
// The scalar reference is dot_q8_0 (quant.h); the two differ only in float rounding.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/quant.h"

namespace whale {

// Whether this CPU has AMX-INT8 and Linux lets this process use the tile registers (asked once,
// with arch_prctl(ARCH_REQ_XCOMP_PERM)). When not, `why` (if given) says what is missing.
bool amx_int8_available(std::string* why = nullptr);

// Q8_0 weights in tile order: per group of 16 rows and block of 32 columns, the B tile (8 rows
// of 64 bytes: byte 4n + k%4 of row k/4 is W[n][k]) followed by the 16 rows' scales as floats
// (576 bytes for 16 × 32 weights: 1.06x the Q8_0 bytes). Rows past the last are zero.
struct AmxQ8Weights {
  int64_t rows = 0, cols = 0, groups = 0, blocks = 0;
  std::unique_ptr<uint8_t[], void (*)(void*)> data{nullptr, nullptr};
  static constexpr size_t kBlockBytes = 512 + 16 * sizeof(float);
  const uint8_t* block(int64_t group, int64_t b) const { return data.get() + (size_t(group) * size_t(blocks) + size_t(b)) * kBlockBytes; }
};
AmxQ8Weights amx_repack_q8_0(const BlockQ8_0* w, int64_t rows, int64_t cols);

// y[t · ldy + r − 16·g0] = Σ_b w.d[r][b] · x.d[t][b] · Σ_k W[r][32b + k] · x.q[t][32b + k] for
// the rows of groups [g0, g1) that exist and t in [0, n_tok). x.q holds n_tok rows of ld_values
// int8 values, x.d n_tok rows of ld_blocks scales (quantize_act_planar's layout). Single-threaded;
// callers split the groups. Only where amx_int8_available().
void amx_gemm_q8_0(const AmxQ8Weights& w, int64_t g0, int64_t g1, const int8_t* xq, const float* xd, int64_t ld_values,
                   int64_t ld_blocks, int64_t n_tok, float* y, int64_t ldy);

}  // namespace whale
