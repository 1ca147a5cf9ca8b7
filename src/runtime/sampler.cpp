#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "kernels/exp.h"

namespace whale {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}

double Sampler::uniform() { return double(rng_() >> 11) * 0x1.0p-53; }

const float* Sampler::penalised(const float* logits, int64_t vocab, std::span<const int32_t> prompt,
                                std::span<const int32_t> output) {
  const SamplingParams& p = params_;
  const bool penalties = p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (!penalties && p.logit_bias.empty()) return logits;
  work_.assign(logits, logits + vocab);
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= 0 && id < vocab) work_[size_t(id)] += bias;
  if (p.repetition_penalty != 1.0f) {
    std::vector<bool> seen(static_cast<size_t>(vocab), false);
    for (auto ids : {prompt, output})
      for (int32_t id : ids)
        if (id >= 0 && id < vocab && !seen[size_t(id)]) {
          seen[size_t(id)] = true;
          float& l = work_[size_t(id)];
          l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
        }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::vector<int32_t> count(static_cast<size_t>(vocab), 0);
    for (int32_t id : output)
      if (id >= 0 && id < vocab) ++count[size_t(id)];
    for (int64_t i = 0; i < vocab; ++i)
      if (count[size_t(i)]) work_[size_t(i)] -= p.presence_penalty + p.frequency_penalty * float(count[size_t(i)]);
  }
  return work_.data();
}

double Sampler::probabilities(const float* logits, int64_t vocab, std::span<const int32_t> prompt,
                              std::span<const int32_t> output, std::vector<float>& probs) {
  logits = penalised(logits, vocab, prompt, output);
  probs.assign(static_cast<size_t>(vocab), 0.0f);
  if (params_.temperature <= 0.0f) {
    probs[size_t(argmax(logits, vocab))] = 1.0f;
    return 1.0;
  }
  if (!filtered()) {  // the whole vocabulary survives: softmax in place, no candidate list
    // The filtered path below computes this distribution too (with other roundings); a request
    // always takes the same path, so a seed reproduces its tokens on every machine (exp.h's exp,
    // sums in a fixed order).
    float* p = probs.data();
    float mx = -INFINITY;
    for (int64_t i = 0; i < vocab; ++i) {  // logit / T once; -inf for what is not finite
      p[i] = std::isfinite(logits[i]) ? logits[i] / params_.temperature : -INFINITY;
      mx = std::max(mx, p[i]);
    }
    if (mx == -INFINITY) {
      std::fill(probs.begin(), probs.end(), 0.0f);
      probs[size_t(argmax(logits, vocab))] = 1.0f;
      return 1.0;
    }
    exp_shifted(p, mx, vocab, p);  // exp(-inf) = 0
    // Sums in four interleaved parts added at the end: a fixed order, without one chain of
    // dependent adds over the whole vocabulary.
    double s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= vocab; i += 4)
      for (int k = 0; k < 4; ++k) s[k] += p[i + k];
    for (; i < vocab; ++i) s[0] += p[i];
    const double sum = (s[0] + s[1]) + (s[2] + s[3]);
    double m[4] = {0, 0, 0, 0};  // the mass of what is written, summed the same way
    for (i = 0; i + 4 <= vocab; i += 4)
      for (int k = 0; k < 4; ++k) m[k] += (p[i + k] = float(p[i + k] / sum));
    for (; i < vocab; ++i) m[0] += (p[i] = float(p[i] / sum));
    return (m[0] + m[1]) + (m[2] + m[3]);
  }
  candidates_.clear();
  for (int64_t i = 0; i < vocab; ++i)
    if (std::isfinite(logits[i])) candidates_.emplace_back(logits[i] / params_.temperature, int32_t(i));
  if (candidates_.empty()) {
    probs[size_t(argmax(logits, vocab))] = 1.0f;
    return 1.0;
  }
  // Most likely first, lowest id on ties. Only as much of the vocabulary is ordered as the
  // filters need (a full sort of ~130K logits per token would cost more than the forward
  // step of a small model).
  auto by_prob = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (params_.top_k > 0 && size_t(params_.top_k) < candidates_.size()) {
    std::nth_element(candidates_.begin(), candidates_.begin() + params_.top_k - 1, candidates_.end(), by_prob);
    candidates_.resize(size_t(params_.top_k));
    std::sort(candidates_.begin(), candidates_.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  }

  // softmax over the survivors, summed in id order
  float mx = -INFINITY;
  for (const auto& c : candidates_) mx = std::max(mx, c.first);
  double sum = 0;
  for (auto& c : candidates_) sum += (c.first = exp_nonpositive(c.first - mx));
  for (auto& c : candidates_) c.first = float(c.first / sum);

  size_t keep = candidates_.size();
  if (params_.min_p > 0) {  // survivors at or above min_p · p(most likely), moved to the front
    const float floor = params_.min_p * float(1.0 / sum);  // the most likely token has exp(0) / sum
    keep = size_t(std::partition(candidates_.begin(), candidates_.end(), [&](const auto& c) { return c.first >= floor; }) -
                  candidates_.begin());
  }
  if (params_.top_p < 1.0f) {  // order a growing prefix until it covers top_p
    size_t sorted = std::min<size_t>(64, keep);
    for (;;) {
      std::partial_sort(candidates_.begin(), candidates_.begin() + long(sorted), candidates_.begin() + long(keep), by_prob);
      double cum = 0;
      size_t n = 0;
      while (n < sorted) {
        cum += candidates_[n++].first;
        if (cum >= params_.top_p) break;
      }
      if (cum >= params_.top_p || sorted == keep) {
        keep = std::max<size_t>(1, n);
        break;
      }
      sorted = std::min(keep, sorted * 8);
    }
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += candidates_[i].first;
  for (size_t i = 0; i < keep; ++i) probs[size_t(candidates_[i].second)] = float(candidates_[i].first / total);
  return mass(probs);
}

bool Sampler::filtered() const {
  return params_.top_k > 0 || params_.min_p > 0 || params_.top_p < 1.0f;
}

double Sampler::mass(const std::vector<float>& probs) {
  double total = 0;
  for (float p : probs)
    if (p > 0) total += p;
  return total;
}

int32_t Sampler::draw(const std::vector<float>& probs) { return draw(probs, mass(probs)); }

int32_t Sampler::draw(const std::vector<float>& probs, double total) {
  if (!(total > 0)) return 0;
  double u = uniform() * total;
  int32_t last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    last = int32_t(i);
    u -= probs[i];
    if (u < 0) return last;
  }
  return last;  // rounding left u at or above 0: the last token with a share
}

int32_t Sampler::sample(const float* logits, int64_t vocab, std::span<const int32_t> prompt,
                        std::span<const int32_t> output) {
  if (params_.temperature <= 0.0f) return argmax(penalised(logits, vocab, prompt, output), vocab);
  const double total = probabilities(logits, vocab, prompt, output, probs_);
  return draw(probs_, total);
}

}  // namespace whale
