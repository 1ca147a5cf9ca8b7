// Turns a row of logits into the next token. Temperature 0 is greedy (argmax, lowest id on
// ties); otherwise logits/T -> softmax -> top-k / top-p / min-p filters -> a draw from a
// seeded generator, so a given seed reproduces the same tokens on every machine.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace whale {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;        // nucleus: smallest set with cumulative probability >= top_p
  int32_t top_k = 0;         // 0: off
  float min_p = 0.0f;        // drop tokens below min_p · p(most likely)
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  int32_t sample(const float* logits, int64_t vocab);
  const SamplingParams& params() const { return params_; }

 private:
  double uniform();  // [0, 1), 53 random bits; independent of the standard library's distributions
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

int32_t argmax(const float* x, int64_t n);

}  // namespace whale
