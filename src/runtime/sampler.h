// Turns a row of logits into the next token.
//   1. logit_bias is added; repetition_penalty (Hugging Face: over prompt and output, divides
//      positive logits, multiplies negative ones) and presence/frequency penalties (OpenAI:
//      over the output, subtracted) are applied;
//   2. temperature 0 is greedy (argmax, lowest id on ties);
//   3. otherwise logits/T -> softmax -> top-k, min-p, top-p -> a draw from a seeded
//      generator, so a given seed reproduces the same tokens on every machine (the softmax
//      uses kernels/exp.h, whose bits do not depend on the instruction set or the C library).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace whale {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;        // nucleus: smallest set with cumulative probability >= top_p
  int32_t top_k = 0;         // 0: off
  float min_p = 0.0f;        // drop tokens below min_p · p(most likely)
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // `prompt` and `output` are the tokens so far (for the penalties).
  int32_t sample(const float* logits, int64_t vocab, std::span<const int32_t> prompt = {},
                 std::span<const int32_t> output = {});

  // The distribution sample() draws from, over the whole vocabulary (filtered tokens 0;
  // greedy: one-hot at the argmax). Returns its mass (the sum of its entries, as they are
  // written; mass() may round differently).
  double probabilities(const float* logits, int64_t vocab, std::span<const int32_t> prompt,
                       std::span<const int32_t> output, std::vector<float>& probs);
  int32_t draw(const std::vector<float>& probs);  // one token from a distribution
  // The same with the distribution's mass (its positive entries summed) known: a caller that
  // zeroes entries between draws keeps it up to date instead of summing the vocabulary again.
  int32_t draw(const std::vector<float>& probs, double total);
  static double mass(const std::vector<float>& probs);
  double uniform();  // [0, 1), 53 random bits; independent of the standard library's distributions

  const SamplingParams& params() const { return params_; }
  bool greedy() const { return params_.temperature <= 0.0f; }
  // Whether top-k, min-p or top-p can drop tokens: without them, taking a token out of the row
  // (its logit to -inf) leaves the others' probabilities in proportion, so a redraw may reuse
  // the distribution with that token's probability set to 0.
  bool filtered() const;

 private:
  const float* penalised(const float* logits, int64_t vocab, std::span<const int32_t> prompt,
                         std::span<const int32_t> output);
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_, probs_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

int32_t argmax(const float* x, int64_t n);

}  // namespace whale
