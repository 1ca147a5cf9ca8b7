// Throughput of one block-quantized matrix product: `whale_matmul_bench TYPE ROWS COLS [TOKENS]
// [THREADS] [COPIES]`. Quantizes Gaussian rows to TYPE (q8_0, q4_0, q5_0, mxfp4, q4_k, q6_k; with
// the suffix _amx or _vnni, e.g. q8_0_amx: through that kernel only, where matmul() chooses by the
// number of tokens) and times
// matmul() (activation quantization, thread hand-off, kernel) on TOKENS tokens; COPIES > 1
// cycles through that many copies of the matrix so that the weights stream from memory (as in
// decode) instead of staying in cache. Prints the median of 7 timings of ~0.3 s: µs per product,
// weight bytes per second, and multiply-adds per second. Built beside `whale` (see BENCHMARKS.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/amx.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_simd.h"

using namespace whale;

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s q8_0|q4_0|q5_0|mxfp4|q4_k|q6_k[_amx|_vnni] ROWS COLS [TOKENS=1] [THREADS=1] [COPIES=1]\n", argv[0]);
    return 2;
  }
  std::string name = argv[1];
  // TYPE_amx / TYPE_vnni: the weights through one kernel, whatever the number of tokens.
  auto suffix = [&](const std::string& s) {
    if (name.size() <= s.size() || name.compare(name.size() - s.size(), s.size(), s) != 0) return false;
    name.resize(name.size() - s.size());
    return true;
  };
  const bool amx = suffix("_amx"), vnni = !amx && suffix("_vnni");
  if (amx) {
    std::string why;
    if (!amx_int8_available(&why)) fail("_amx: ", why);
  }
  auto number = [&](int i, int64_t fallback) {
    if (argc <= i) return fallback;
    const int64_t v = std::atoll(argv[i]);
    if (v <= 0) fail("argument ", i, " (", argv[i], ") must be a positive integer");
    return v;
  };
  const int64_t rows = number(2, 0), cols = number(3, 0), T = number(4, 1), threads = number(5, 1), copies = number(6, 1);
  DType type;
  if (name == "q8_0") type = DType::Q8_0;
  else if (name == "q4_0") type = DType::Q4_0;
  else if (name == "q5_0") type = DType::Q5_0;
  else if (name == "mxfp4") type = DType::MXFP4;
  else if (name == "q4_k") type = DType::Q4_K;
  else if (name == "q6_k") type = DType::Q6_K;
  else fail("unknown type ", name, " (q8_0, q4_0, q5_0, mxfp4, q4_k, q6_k)");
  if (cols % dtype_block_elems(type)) fail(name, " needs COLS a multiple of ", dtype_block_elems(type));

  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const size_t row_bytes = dtype_row_bytes(type, cols), matrix = row_bytes * size_t(rows);
  std::vector<uint8_t> storage(matrix * size_t(copies));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = nd(rng);
    uint8_t* dst = storage.data() + row_bytes * size_t(r);
    switch (type) {
      case DType::Q8_0: quantize_q8_0(row.data(), cols, reinterpret_cast<BlockQ8_0*>(dst)); break;
      case DType::Q4_0: quantize_q4_0(row.data(), cols, reinterpret_cast<BlockQ4_0*>(dst)); break;
      case DType::Q5_0: quantize_q5_0(row.data(), cols, reinterpret_cast<BlockQ5_0*>(dst)); break;
      case DType::MXFP4: quantize_mxfp4(row.data(), cols, reinterpret_cast<BlockMXFP4*>(dst)); break;
      case DType::Q4_K: quantize_q4_k(row.data(), cols, reinterpret_cast<BlockQ4_K*>(dst)); break;
      default: quantize_q6_k(row.data(), cols, reinterpret_cast<BlockQ6_K*>(dst)); break;
    }
  }
  for (int64_t c = 1; c < copies; ++c) std::copy_n(storage.begin(), matrix, storage.begin() + std::ptrdiff_t(matrix * size_t(c)));
  std::vector<float> x(static_cast<size_t>(T * cols)), y(static_cast<size_t>(T * rows));
  for (auto& v : x) v = nd(rng);
  ThreadPool pool{int(threads)};
  // One kernel: activations quantized in each timed product as matmul() does, rows in bands of 16.
  std::vector<int8_t> aq(size_t(T * cols));
  std::vector<float> ad(size_t(T * cols / 32));
  std::vector<int32_t> as(size_t(T * cols / 32));
  std::vector<double> seconds;
  for (int rep = 0; rep < 7; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t n = 0;
    double elapsed = 0;
    do {
      Weight w;
      w.dtype = type;
      w.rows = rows;
      w.cols = cols;
      w.data = storage.data() + matrix * size_t(n % copies);
      if (amx || vnni) {
        pool.parallel_for(T, [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t)
            quantize_act_planar_simd(x.data() + t * cols, cols, act_scale_span(type), aq.data() + t * cols, ad.data() + t * cols / 32, as.data() + t * cols / 32);
        });
        const ActArgs act{aq.data(), ad.data(), as.data(), cols, cols / 32};
        pool.parallel_for((rows + 15) / 16, [&](int64_t b, int64_t e) {
          QuantGemmArgs a{type, w.data, row_bytes, cols, b * 16, std::min(rows, e * 16), act, T, y.data() + b * 16, rows};
          if (amx) amx_gemm(a);
          else {
            a.amx = false;
            quant_gemm_rows_simd(a);
          }
        });
      } else {
        matmul(w, x.data(), T, y.data(), pool);
      }
      ++n;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (elapsed < 0.3);
    seconds.push_back(elapsed / double(n));
  }
  std::sort(seconds.begin(), seconds.end());
  const double t = seconds[3];
  std::printf("%s%s %lldx%lld, %lld token(s), %lld thread(s), %lld cop%s: %.1f us, %.2f GB/s of weights, %.2f GMAC/s\n",
              name.c_str(), amx ? " (AMX)" : vnni ? " (VNNI)" : "", (long long)rows, (long long)cols, (long long)T, (long long)threads, (long long)copies,
              copies == 1 ? "y" : "ies", t * 1e6, double(matrix) / t / 1e9, double(rows * cols * T) / t / 1e9);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "whale_matmul_bench: %s\n", e.what());
  return 1;
}
