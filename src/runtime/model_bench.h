// Model benchmarks in the manner of llama-bench: prompt processing (pp) and token generation
// (tg) throughput with warm-up and repeats, peak memory, and decode bandwidth as a fraction
// of a memory bandwidth measured on the spot (the roofline of a bandwidth-bound decode).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"

namespace whale {

struct Spread {
  double median = 0, min = 0, max = 0;
  static Spread of(std::vector<double> v);
};

// Bytes one decode step reads at a given context length: every dense weight, the router,
// the shared experts, top-k of each MoE layer's routed experts (their average size), one
// embedding row, the LM head, and the latent KV cache.
double decode_bytes_per_token(const Model& model, int64_t context);

// Sustained read bandwidth of this machine with `pool`'s threads, in bytes per second.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int repeats = 5);

struct BenchResult {
  double load_seconds = 0;
  Spread pp, tg;  // tokens per second
  int64_t peak_rss_bytes = 0;
  double bandwidth = 0, decode_bytes = 0;  // bytes/s measured; bytes per generated token
};

// pp: prefill of n_prompt tokens; tg: n_gen decode steps from an empty context. One untimed
// warm-up run of each, then `repeats` timed runs.
BenchResult bench_model(Model& model, int64_t n_prompt, int64_t n_gen, int repeats, ThreadPool& pool);

struct SpecBenchResult {
  Spread plain_tps, spec_tps, ceiling_tps;  // tokens/s: plain decode, MTP speculation, all drafts accepted
  double acceptance_rate = 0, tokens_per_round = 0;
  std::vector<double> acceptance_at;  // per draft position
};

// Greedy generation of n_gen tokens after a prompt of n_prompt tokens, plain and speculative.
SpecBenchResult bench_speculative(Model& model, int64_t n_prompt, int64_t n_gen, int draft_len, int repeats);

}  // namespace whale
