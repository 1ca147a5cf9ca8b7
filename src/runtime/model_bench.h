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

// Through the engine, one sequence at a time: pp is a prompt of n_prompt random tokens in one
// forward step, tg is n_gen decode steps (greedy, end-of-sequence ignored) after a one-token
// prompt. One untimed warm-up run of each, then `repeats` timed runs. With `depth`, both run
// after that many context tokens (from the prefix cache, as llama-bench's -d).
BenchResult bench_model(Model& model, int64_t n_prompt, int64_t n_gen, int repeats, ThreadPool& pool, int64_t depth = 0);

struct SpecBenchResult {
  Spread plain_tps, spec_tps, ceiling_tps;  // tokens/s: plain decode, MTP speculation, all drafts accepted
  uint64_t rounds = 0, drafted = 0, accepted = 0;  // verify steps, draft tokens, accepted drafts
  std::vector<uint64_t> accepted_at;               // per draft position
  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  double tokens_per_round() const { return rounds ? double(rounds + accepted) / double(rounds) : 0.0; }
};

// Greedy generation of n_gen tokens after a prompt of n_prompt tokens through the engine:
// plain, with MTP speculation, and with every draft right (the ceiling). Fails if the
// speculative outputs differ from the plain one.
SpecBenchResult bench_speculative(Model& model, int64_t n_prompt, int64_t n_gen, int draft_len, int repeats);

}  // namespace whale
