// Element types of stored tensors and the scalar conversions between them.
// Weights stay in their stored type; kernels convert on the fly (see kernels/matmul.h).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

namespace whale {

enum class DType : uint8_t {
  F32, F16, BF16, F8_E4M3, F8_E5M2, F64, I64, I32, I16, I8, U8, BOOL,
  E8M0,  // unsigned power-of-two exponent (UE8M0 scales)
  // float4 e2m1, two per byte (element 2k in the low nibble): DeepSeek-V4's FP4 experts, with a
  // power-of-two scale per 32 values kept beside them. Stored as I8 in safetensors.
  F4_E2M1,
  // GGUF block-quantized types (llama.cpp's ggml formats): a row is a whole number of blocks.
  Q8_0,  // 32 values: f16 scale + 32 int8                        (34 bytes)
  Q4_K,  // 256 values: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles (144)
  Q6_K,  // 256 values: 128 bytes low nibbles, 64 bytes high 2 bits, 16 int8 scales, f16 d (210)
  Q4_0,  // 32 values: f16 scale + 16 bytes of nibbles, offset 8    (18)
  Q5_0,  // 32 values: f16 scale + 4 bytes of fifth bits + 16 bytes of nibbles, offset 16 (22)
  MXFP4,  // 32 values: e8m0 scale + 16 bytes of e2m1 nibbles (as Q4_0's) (17): DeepSeek-V4's experts
};

// Values per block and bytes per block; 1 and dtype_size() for plain types.
int64_t dtype_block_elems(DType t);
int64_t dtype_block_bytes(DType t);
inline bool is_block_quantized(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q5_0 || t == DType::Q4_K || t == DType::Q6_K ||
         t == DType::MXFP4;
}
// Bytes of n values (n a multiple of the block size).
inline size_t dtype_row_bytes(DType t, int64_t n) { return size_t(n / dtype_block_elems(t) * dtype_block_bytes(t)); }

std::string_view dtype_name(DType t);
// Parses a safetensors dtype string ("BF16", "F8_E4M3", ...); returns false if unknown.
bool dtype_from_safetensors(std::string_view s, DType* out);
size_t dtype_size(DType t);  // bytes per element

// float4 e2m1 code (sign bit 3, exponent bits 2-1, mantissa bit 0) as f16 bits: 2^-14 times
// its value {0, .5, 1, 1.5, 2, 3, 4, 6} (the magnitude bits land in the f16 exponent's low bits).
inline uint16_t fp4_e2m1_f16_bits(uint8_t code) { return uint16_t(((code & 7) << 9) | ((code & 8) << 12)); }
inline float fp4_e2m1_to_f32(uint8_t code) {
  constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  return (code & 8) ? -kMag[code & 7] : kMag[code & 7];
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, as torch does when casting float32 -> bfloat16.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

// Exact, branch-light (no libm): the hot path of every Q8_0/K-quant block scale.
// Normal values are rebased by exponent arithmetic; subnormals through a magic bias.
inline float f16_to_f32(uint16_t h) {
  auto as_float = [](uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; };
  auto as_bits = [](float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; };
  const uint32_t w = uint32_t(h) << 16, sign = w & 0x80000000u, two_w = w + w;
  const float normalized = as_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = as_float((two_w >> 17) | (126u << 23)) - 0.5f;
  return as_float(sign | (two_w < (1u << 27) ? as_bits(denormalized) : as_bits(normalized)));
}
uint16_t f32_to_f16(float f);

// float8 e4m3fn (no infinities, 0x7f/0xff are NaN, max finite 448), as in DeepSeek-V3 checkpoints.
namespace detail {
constexpr float pow2(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}
constexpr float decode_fp8_e4m3(uint8_t v) {
  const int exp = (v >> 3) & 0xf, mant = v & 7;
  if (exp == 0xf && mant == 7) return std::numeric_limits<float>::quiet_NaN();
  const float mag = exp == 0 ? float(mant) / 8.0f * pow2(-6)             // subnormal
                             : (1.0f + float(mant) / 8.0f) * pow2(exp - 7);
  return (v >> 7) ? -mag : mag;
}
constexpr std::array<float, 256> make_fp8_e4m3_table() {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = decode_fp8_e4m3(uint8_t(i));
  return t;
}
}  // namespace detail
inline constexpr std::array<float, 256> kFp8E4M3ToF32 = detail::make_fp8_e4m3_table();
inline float fp8_e4m3_to_f32(uint8_t v) { return kFp8E4M3ToF32[v]; }
uint8_t f32_to_fp8_e4m3(float f);  // round to nearest even, saturating to +-448
float fp8_e5m2_to_f32(uint8_t v);
// UE8M0: value 2^(v-127); 0xff is NaN.
float e8m0_to_f32(uint8_t v);

// Reads element i of a buffer of floating type t as float32.
float load_as_f32(DType t, const void* data, size_t i);

}  // namespace whale
