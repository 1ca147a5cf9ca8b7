// Engine counters for /metrics and the CLI. Each step gathers what happened in a StepStats
// value; the engine applies it to EngineMetrics in one place (EngineMetrics::apply).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace whale {

struct Histogram {
  std::vector<double> bounds;   // upper bounds in seconds
  std::vector<uint64_t> counts; // per bound, not cumulative; one more for +Inf
  double sum = 0;
  uint64_t n = 0;
  explicit Histogram(std::vector<double> b = {}) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v);
};

// What one engine step did.
struct StepStats {
  int64_t step_tokens = 0, prompt_tokens = 0;  // tokens fed to the forward pass (prompt chunks among them)
  double forward_seconds = 0;
  std::vector<double> ttft, itl, e2e;          // observations, seconds
  uint64_t requests_finished = 0, prompt_tokens_finished = 0, cached_tokens_finished = 0, generated_tokens_finished = 0;
  uint64_t cached_ram_tokens_finished = 0, cached_disk_tokens_finished = 0;  // of cached_tokens_finished
  // MTP speculation: verify rounds, drafted and accepted tokens, accepted by draft position.
  uint64_t spec_rounds = 0, spec_drafted = 0, spec_accepted = 0;
  std::vector<uint64_t> spec_accepted_at;
};

struct EngineMetrics {
  int64_t running = 0, waiting = 0;
  uint64_t requests_total = 0, prompt_tokens_total = 0, generated_tokens_total = 0, cached_tokens_total = 0;
  uint64_t cached_ram_tokens_total = 0, cached_disk_tokens_total = 0;  // of cached_tokens_total: from the KV store
  uint64_t steps_total = 0, step_tokens_total = 0;
  double prefill_seconds_total = 0, decode_seconds_total = 0;
  int64_t kv_blocks_total = 0, kv_blocks_free = 0, prefix_cache_blocks = 0, block_size = 0;
  Histogram ttft, itl, e2e;
  uint64_t spec_rounds_total = 0, spec_draft_tokens_total = 0, spec_accepted_tokens_total = 0;
  std::vector<uint64_t> spec_accepted_at;  // [draft]
  EngineMetrics();

  void apply(const StepStats& s);
};

}  // namespace whale
