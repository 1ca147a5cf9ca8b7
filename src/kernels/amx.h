// AMX (Advanced Matrix Extensions: Sapphire Rapids and later Xeons) int8 products of block-
// quantized weights with int8 activations, for prompt processing and large batches. Each group
// of 16 weight rows is turned into B tiles once per call, in a per-thread buffer, so the weights
// stay in their file's layout and cost no memory: the 32-value types (block_columns.h) as
// unsigned bytes, 576 bytes per 16 rows and 32 columns, then one `tdpbsud` per block and tile of
// 16 tokens, its int32 sums scaled into float accumulators block by block; the K types with the
// sub-block scales folded into the weights (amx.cpp), then eight or twelve full-depth products
// per super-block and one scaling per super-block.
//
// Every element is computed as the scalar reference (quant.h: dot_q8_0, ..., dot_q6_k) and the
// VNNI kernel compute it, bit for bit, so the choice between AMX and VNNI by the number of
// tokens never changes a number: a token gets the same result alone or batched, in one chunk or
// many.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/quant_simd.h"

namespace whale {

// Whether this CPU has AMX-INT8 and Linux lets this process use the tile registers (asked once,
// with arch_prctl(ARCH_REQ_XCOMP_PERM)). When not, `why` (if given) says what is missing.
bool amx_int8_available(std::string* why = nullptr);

// From this many tokens on, quantized products take AMX where it exists: one token pays for a
// tile of 16 and for turning the weights into tiles, and below this the VNNI kernel is faster
// (BENCHMARKS.md, whale_matmul_bench TYPE_amx / TYPE_vnni).
constexpr int64_t kAmxMinTokens = 16;

// quant_gemm_rows_simd's product for Q8_0, Q4_0, Q5_0, MXFP4, Q4_K or Q6_K weights (the K
// types' activations quantized in spans of 256, in their natural order), on AMX. Single-
// threaded; callers split the rows. Only where amx_int8_available().
void amx_gemm(const QuantGemmArgs& a);

}  // namespace whale
