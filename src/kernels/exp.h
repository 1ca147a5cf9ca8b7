// e^x for sampling, the same bits on every machine: the SIMD kernel (exp_simd.cpp, Highway with
// run-time dispatch) and its scalar twin below run one sequence of IEEE single-precision
// operations (multiplies and adds kept apart, never fused; rounding to an integer through
// 1.5·2²³), so a seeded draw does not depend on the instruction set or on the C library's
// expf. Cephes' expf: x = k·ln2 + r (Cody-Waite, ln2 in two parts), e^r by a degree-7
// polynomial, times 2^k built in the exponent bits. Within 2 ulp of e^x.
//
// Defined for x ≤ 0 (logits less their maximum): x below −86 gives 0 (e^−86 ≈ 4e-38, below any
// share a draw can pick), −inf included, so 2^k stays a normal number.
#pragma once
#include <cstdint>
#include <cstring>

namespace whale {

namespace exp_detail {
inline constexpr float kLowest = -86.0f;
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kRound = 12582912.0f;  // 1.5·2²³: adding and removing it rounds to an integer
inline constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
inline constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
}  // namespace exp_detail

// The scalar twin: what exp_shifted computes for each element.
inline float exp_nonpositive(float x) {
  using namespace exp_detail;
  if (!(x >= kLowest)) return 0.0f;
  const float k = (x * kLog2e + kRound) - kRound;
  const float r = (x - k * kLn2Hi) - k * kLn2Lo;
  const float z = r * r;
  float y = kP[0];
  for (int i = 1; i < 6; ++i) y = y * r + kP[i];
  y = (y * z + r) + 1.0f;
  const uint32_t bits = uint32_t(int32_t(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return y * scale;
}

// out[i] = exp_nonpositive(x[i] − shift) for i < n (x[i] ≤ shift, or −inf); out may be x.
void exp_shifted(const float* x, float shift, int64_t n, float* out);

}  // namespace whale
