#include "runtime/metrics.h"

namespace whale {

namespace {
std::vector<double> latency_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60};
}
}  // namespace

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++n;
}

EngineMetrics::EngineMetrics() : ttft(latency_buckets()), itl(latency_buckets()), e2e(latency_buckets()) {}

void EngineMetrics::apply(const StepStats& s) {
  if (s.step_tokens > 0) {
    ++steps_total;
    step_tokens_total += uint64_t(s.step_tokens);
    (s.prompt_tokens > 0 ? prefill_seconds_total : decode_seconds_total) += s.forward_seconds;
  }
  for (double v : s.ttft) ttft.observe(v);
  for (double v : s.itl) itl.observe(v);
  for (double v : s.e2e) e2e.observe(v);
  requests_total += s.requests_finished;
  prompt_tokens_total += s.prompt_tokens_finished;
  cached_tokens_total += s.cached_tokens_finished;
  cached_ram_tokens_total += s.cached_ram_tokens_finished;
  cached_disk_tokens_total += s.cached_disk_tokens_finished;
  generated_tokens_total += s.generated_tokens_finished;
  spec_rounds_total += s.spec_rounds;
  spec_draft_tokens_total += s.spec_drafted;
  spec_accepted_tokens_total += s.spec_accepted;
  if (spec_accepted_at.size() < s.spec_accepted_at.size()) spec_accepted_at.resize(s.spec_accepted_at.size(), 0);
  for (size_t i = 0; i < s.spec_accepted_at.size(); ++i) spec_accepted_at[i] += s.spec_accepted_at[i];
}

}  // namespace whale
