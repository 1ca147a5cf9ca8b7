#include "runtime/model_bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>

#include "core/memory_stats.h"
#include "kernels/gemm_simd.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"

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

BenchResult bench_model(Model& model, int64_t n_prompt, int64_t n_gen, int repeats, ThreadPool& pool) {
  BenchResult r;
  const int64_t V = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  auto cache = model.make_cache(std::max(n_prompt, n_gen) + 1);
  std::vector<double> pp, tg;
  double bandwidth = 0;
  for (int rep = 0; rep <= repeats; ++rep) {  // rep 0 warms caches and pages in the weights
    if (n_prompt > 0) {
      const auto prompt = random_tokens(n_prompt, V, uint64_t(rep) + 1);
      SeqCache seq;
      seq.reserve(*cache, n_prompt);
      Batch b;
      b.add(&seq, prompt.data(), n_prompt);
      const double t0 = now();
      model.forward(b, *cache, logits.data());
      if (rep > 0) pp.push_back(double(n_prompt) / (now() - t0));
      seq.clear(*cache);
    }
    if (n_gen > 0) {
      const auto tokens = random_tokens(n_gen, V, uint64_t(rep) + 100);
      SeqCache seq;
      seq.reserve(*cache, n_gen);
      const double t0 = now();
      for (int64_t i = 0; i < n_gen; ++i) {
        Batch b;
        b.add(&seq, &tokens[size_t(i)], 1);
        model.forward(b, *cache, logits.data());
      }
      if (rep > 0) tg.push_back(double(n_gen) / (now() - t0));
      seq.clear(*cache);
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
  r.decode_bytes = decode_bytes_per_token(model, n_gen / 2);  // the average context of the tg run
  return r;
}

SpecBenchResult bench_speculative(Model& model, int64_t n_prompt, int64_t n_gen, int draft_len, int repeats) {
  SpecBenchResult r;
  const int64_t V = model.config().vocab_size, ctx = n_prompt + n_gen + draft_len + 2;
  const auto prompt = random_tokens(std::max<int64_t>(1, n_prompt), V, 7);
  std::vector<double> plain, spec, ceiling;
  std::vector<int32_t> reference;
  SpecStats totals;
  for (int rep = 0; rep <= repeats; ++rep) {
    {  // plain greedy decoding
      auto cache = model.make_cache(ctx);
      SeqCache seq;
      seq.reserve(*cache, ctx);
      std::vector<float> logits(static_cast<size_t>(V));
      const double t0 = now();
      Batch b;
      b.add(&seq, prompt.data(), int64_t(prompt.size()));
      model.forward(b, *cache, logits.data());
      std::vector<int32_t> out;
      while (int64_t(out.size()) < n_gen) {
        out.push_back(argmax(logits.data(), V));
        Batch s;
        s.add(&seq, &out.back(), 1);
        model.forward(s, *cache, logits.data());
      }
      if (rep > 0) plain.push_back(double(n_gen) / (now() - t0));
      reference = out;
    }
    {
      SpeculativeDecoder d(model, draft_len, ctx);
      Sampler greedy({});
      const double t0 = now();
      d.generate(prompt, n_gen, greedy, {});
      if (rep > 0) {
        spec.push_back(double(n_gen) / (now() - t0));
        const SpecStats& s = d.stats();
        totals.rounds += s.rounds;
        totals.drafted += s.drafted;
        totals.accepted += s.accepted;
        totals.emitted += s.emitted;
        totals.accepted_at.resize(s.accepted_at.size());
        for (size_t i = 0; i < s.accepted_at.size(); ++i) totals.accepted_at[i] += s.accepted_at[i];
      }
    }
    {  // the ceiling: the main model's own continuation proposed, so every draft is accepted
      SpeculativeDecoder d(model, draft_len, ctx + draft_len);
      std::vector<int32_t> proposals = reference;
      proposals.resize(reference.size() + size_t(draft_len) + 1, 0);
      d.set_proposer([&](int64_t i) { return proposals[size_t(std::min<int64_t>(i, int64_t(proposals.size()) - 1))]; });
      Sampler greedy({});
      const double t0 = now();
      d.generate(prompt, n_gen, greedy, {});
      if (rep > 0) ceiling.push_back(double(n_gen) / (now() - t0));
    }
  }
  r.plain_tps = Spread::of(plain);
  r.spec_tps = Spread::of(spec);
  r.ceiling_tps = Spread::of(ceiling);
  r.acceptance_rate = totals.acceptance_rate();
  r.tokens_per_round = totals.tokens_per_round();
  for (int64_t a : totals.accepted_at) r.acceptance_at.push_back(totals.rounds ? double(a) / double(totals.rounds) : 0.0);
  return r;
}

}  // namespace whale
