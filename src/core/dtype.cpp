#include "core/dtype.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace whale {

namespace {
struct DTypeEntry {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4},        {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F64, "F64", 8},
    {DType::I64, "I64", 8},        {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},          {DType::U8, "U8", 1},           {DType::BOOL, "BOOL", 1},
    {DType::E8M0, "F8_E8M0", 1},      {DType::F4_E2M1, "F4_E2M1", 0},
    {DType::Q8_0, "Q8_0", 0}, {DType::Q4_0, "Q4_0", 0}, {DType::Q5_0, "Q5_0", 0}, {DType::Q4_K, "Q4_K", 0}, {DType::Q6_K, "Q6_K", 0},
    {DType::MXFP4, "MXFP4", 0},
};

}  // namespace

std::string_view dtype_name(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.name;
  return "?";
}

int64_t dtype_block_elems(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q5_0: case DType::MXFP4: return 32;
    case DType::Q4_K: case DType::Q6_K: return 256;
    case DType::F4_E2M1: return 2;
    default: return 1;
  }
}

int64_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0: return 34;
    case DType::Q4_0: return 18;
    case DType::Q5_0: return 22;
    case DType::MXFP4: return 17;
    case DType::Q4_K: return 144;
    case DType::Q6_K: return 210;
    case DType::F4_E2M1: return 1;
    default: return int64_t(dtype_size(t));
  }
}

bool dtype_from_safetensors(std::string_view s, DType* out) {
  for (const auto& e : kDTypes) {
    if (e.size == 0) continue;  // block types are not safetensors dtypes
    if (s == e.name) {
      *out = e.type;
      return true;
    }
  }
  return false;
}

size_t dtype_size(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e.size;
  return 0;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  x &= 0x7fffffff;
  if (x > 0x7f800000) return uint16_t(sign | 0x7e00);           // NaN
  if (x >= 0x477ff000) return uint16_t(sign | 0x7c00);          // overflow -> inf (65520 rounds up)
  if (x < 0x38800000) {                                          // subnormal or zero in f16
    float a;
    std::memcpy(&a, &x, 4);
    return uint16_t(sign | uint32_t(std::nearbyint(a * 16777216.0f)));  // units of 2^-24, ties to even
  }
  uint32_t r = x + 0xfff + ((x >> 13) & 1);  // round to nearest even on the 13 dropped bits
  return uint16_t(sign | ((r - 0x38000000) >> 13));
}

uint8_t f32_to_fp8_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;  // saturate to max finite
  // Search the 127 non-negative finite codes for the nearest, ties to the even code.
  int lo = 0, hi = 0x7e;
  while (lo < hi) {  // first code whose value >= a
    int mid = (lo + hi) / 2;
    if (kFp8E4M3ToF32[mid] < a) lo = mid + 1;
    else hi = mid;
  }
  int best = lo;
  if (lo > 0) {
    const float up = kFp8E4M3ToF32[lo] - a, down = a - kFp8E4M3ToF32[lo - 1];
    if (down < up || (down == up && ((lo - 1) & 1) == 0)) best = lo - 1;
  }
  return sign | uint8_t(best);
}

float fp8_e5m2_to_f32(uint8_t v) { return f16_to_f32(uint16_t(v) << 8); }

float e8m0_to_f32(uint8_t v) {
  if (v == 0xff) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(v) - 127);
}

float load_as_f32(DType t, const void* data, size_t i) {
  const auto* p = static_cast<const uint8_t*>(data);
  switch (t) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return f16_to_f32(h);
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return bf16_to_f32(h);
    }
    case DType::F8_E4M3: return fp8_e4m3_to_f32(p[i]);
    case DType::F8_E5M2: return fp8_e5m2_to_f32(p[i]);
    case DType::E8M0: return e8m0_to_f32(p[i]);
    case DType::F64: {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      return float(d);
    }
    default: fail("tensor of type ", dtype_name(t), " cannot be read as floating point");
  }
}

}  // namespace whale
