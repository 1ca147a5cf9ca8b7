#include "runtime/model_bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>

#include "core/memory_stats.h"
#include "kernels/gemm_simd.h"
#include "core/error.h"
#include "runtime/engine.h"

namespace whale {

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % uint64_t(vocab));
  return t;
}

double layer_bytes(const LayerWeights& L, const ModelConfig& c) {
  const AttentionWeights& A = L.attn;
  double b = 0;
  for (const Weight* w : {&A.q_proj, &A.q_a_proj, &A.q_b_proj, &A.kv_a_proj_with_mqa, &A.kv_b_proj, &A.o_proj, &L.hc_attn.fn,
                          &L.hc_ffn.fn})
    if (!w->empty()) b += double(w->bytes());
  if (!L.is_moe) return b + double(L.mlp.gate_proj.bytes() + L.mlp.up_proj.bytes() + L.mlp.down_proj.bytes());
  const MoEWeights& M = L.moe;
  b += double(M.gate.bytes());
  if (!M.shared_experts.gate_proj.empty())
    b += double(M.shared_experts.gate_proj.bytes() + M.shared_experts.up_proj.bytes() + M.shared_experts.down_proj.bytes());
  double experts = 0;
  for (const MLPWeights& e : M.experts) experts += double(e.gate_proj.bytes() + e.up_proj.bytes() + e.down_proj.bytes());
  return b + experts / double(M.experts.size()) * double(c.num_experts_per_tok);
}
}  // namespace

Spread Spread::of(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  return s;
}

double decode_bytes_per_token(const Model& model, int64_t context) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  double b = double(w.embed_tokens.row_bytes()) + double(w.lm_head.bytes()) + double(w.hc_head.fn.bytes());
  for (const LayerWeights& L : w.layers) b += layer_bytes(L, c);
  b += double(c.num_hidden_layers) * double(context) * double(c.kv_cache_dim()) * sizeof(float);
  return b;
}

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(float);
  std::unique_ptr<float[]> buf(new float[n]);
  pool.parallel_for(int64_t(n), [&](int64_t b, int64_t e) {  // touch every page first
    for (int64_t i = b; i < e; ++i) buf[size_t(i)] = 1.0f;
  }, 1 << 16);
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::vector<float> sinks(size_t(pool.size()) * 16, 0.0f);
    const double t0 = now();
    pool.run([&](int tid) {
      const size_t per = n / size_t(pool.size()), begin = per * size_t(tid), end = tid + 1 == pool.size() ? n : begin + per;
      sinks[size_t(tid) * 16] = simd_read_sum(buf.get() + begin, end - begin);
    });
    const double dt = now() - t0;
    volatile float keep = 0;
    for (float s : sinks) keep = keep + s;
    best = std::max(best, double(bytes) / dt);
  }
  return best;
}

namespace {
// A request of `prompt` token ids that decodes `n` tokens greedily, whatever they are.
EngineRequest token_request(std::vector<int32_t> prompt, int64_t n) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.options.max_tokens = n;
  r.options.ignore_eos = true;
  r.parse = false;
  return r;
}
}  // namespace

BenchResult bench_model(Model& model, int64_t n_prompt, int64_t n_gen, int repeats, ThreadPool& pool, int64_t depth) {
  BenchResult r;
  const int64_t V = model.config().vocab_size;
  // One sequence at a time, each prompt in one forward step (as llama-bench's pp). At a depth,
  // every request starts with the same `depth` context tokens, prefilled once (untimed) and then
  // served from the prefix cache: pp times n_prompt new tokens after them, tg n_gen decode steps
  // after them (llama-bench's -d). Without a depth there is no prefix cache (every prompt is new).
  EngineConfig ec;
  ec.parallel = 1;
  ec.ctx = depth + std::max(n_prompt, n_gen + 1) + 1;
  ec.prefill_chunk = ec.step_tokens = std::max<int64_t>(n_prompt, depth > 0 ? 512 : 1);
  ec.prefix_cache = depth > 0;
  Engine engine(model, nullptr, ec);
  const std::vector<int32_t> context = random_tokens(depth, V, 999);
  auto with_context = [&](std::vector<int32_t> tail) {
    std::vector<int32_t> t = context;
    t.insert(t.end(), tail.begin(), tail.end());
    return t;
  };
  auto run = [&](std::vector<int32_t> tail, int64_t n) {
    const RequestOutput out = engine.run(token_request(with_context(std::move(tail)), n));
    if (!out.error.empty()) fail("bench: ", out.error);
    if (out.stats.cached_tokens < depth)
      fail("bench: the ", depth, "-token context was not served from the prefix cache (", out.stats.cached_tokens, " tokens were)");
    return out;
  };
  // The context, prefilled once (plus a token: a prompt's last position is never served from the cache).
  if (depth > 0) {
    const RequestOutput out = engine.run(token_request(with_context({1}), 1));
    if (!out.error.empty()) fail("bench: ", out.error);
  }
  std::vector<double> pp, tg;
  double bandwidth = 0;
  for (int rep = 0; rep <= repeats; ++rep) {  // rep 0 warms caches and pages in the weights
    if (n_prompt > 0) {
      const RequestOutput out = run(random_tokens(n_prompt, V, uint64_t(rep) + 1), 1);
      if (rep > 0) pp.push_back(double(n_prompt) / out.stats.prefill_seconds);
    }
    if (n_gen > 0) {
      // One prompt token, then n_gen decode steps after the first generated token.
      const RequestOutput out = run(random_tokens(1, V, uint64_t(rep) + 100), n_gen + 1);
      if (rep > 0) tg.push_back(double(n_gen) / out.stats.decode_seconds);
      // The bandwidth of a shared VM drifts by tens of percent within minutes: measured beside
      // every timed decode run, the roofline takes the best of them.
      // (Peak RSS is read before the first measurement allocates its buffer.)
      if (rep > 0) {
        if (r.peak_rss_bytes == 0) r.peak_rss_bytes = read_memory_stats().peak_rss_bytes;
        bandwidth = std::max(bandwidth, measure_read_bandwidth(pool, size_t(1) << 30, 2));
      }
    }
  }
  r.pp = Spread::of(pp);
  r.tg = Spread::of(tg);
  if (r.peak_rss_bytes == 0) r.peak_rss_bytes = read_memory_stats().peak_rss_bytes;
  r.bandwidth = std::max(bandwidth, measure_read_bandwidth(pool));
  r.decode_bytes = decode_bytes_per_token(model, depth + n_gen / 2);  // the average context of the tg run
  return r;
}

SpecBenchResult bench_speculative(Model& model, int64_t n_prompt, int64_t n_gen, int draft_len, int repeats) {
  SpecBenchResult r;
  const int64_t V = model.config().vocab_size;
  const auto prompt = random_tokens(std::max<int64_t>(1, n_prompt), V, 7);
  EngineConfig ec;
  ec.parallel = 1;
  ec.ctx = int64_t(prompt.size()) + n_gen + 1;
  ec.prefix_cache = false;
  Engine plain_engine(model, nullptr, ec);
  ec.draft = draft_len;
  Engine spec_engine(model, nullptr, ec);
  // The ceiling: the main model's own continuation proposed, so every draft is accepted.
  std::vector<int32_t> reference;
  ec.proposer = [&reference](int64_t i) { return i < int64_t(reference.size()) ? reference[size_t(i)] : 0; };
  Engine ceiling_engine(model, nullptr, ec);

  auto timed = [&](Engine& e, std::vector<double>& tps, int rep) {
    const double t0 = now();
    RequestOutput out = e.run(token_request(prompt, n_gen));
    if (!out.error.empty()) fail("bench: ", out.error);
    if (rep > 0) tps.push_back(double(n_gen) / (now() - t0));
    return out.tokens;
  };
  std::vector<double> plain, spec, ceiling;
  for (int rep = 0; rep <= repeats; ++rep) {
    reference = timed(plain_engine, plain, rep);
    const EngineMetrics before = spec_engine.metrics();
    if (timed(spec_engine, spec, rep) != reference) fail("bench: speculative decoding changed the output");
    if (rep == 0) continue;
    const EngineMetrics after = spec_engine.metrics();
    r.rounds += after.spec_rounds_total - before.spec_rounds_total;
    r.drafted += after.spec_draft_tokens_total - before.spec_draft_tokens_total;
    r.accepted += after.spec_accepted_tokens_total - before.spec_accepted_tokens_total;
    r.accepted_at.resize(after.spec_accepted_at.size(), 0);
    for (size_t i = 0; i < after.spec_accepted_at.size(); ++i)
      r.accepted_at[i] += after.spec_accepted_at[i] - before.spec_accepted_at[i];
    if (timed(ceiling_engine, ceiling, rep) != reference) fail("bench: speculative decoding changed the output");
  }
  r.plain_tps = Spread::of(plain);
  r.spec_tps = Spread::of(spec);
  r.ceiling_tps = Spread::of(ceiling);
  return r;
}

}  // namespace whale
