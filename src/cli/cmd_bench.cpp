// whale bench --model DIR [-p 512] [-n 128] [-t THREADS] [-r REPEATS] [--spec mtp [--draft K]] [--json]
//   llama-bench-style throughput: load time, prompt processing (pp) and generation (tg)
//   tokens/s (median and spread), peak RSS, and decode bandwidth against a bandwidth measured
//   on the spot. With --spec mtp: plain vs MTP-speculative greedy decoding, acceptance per
//   draft position, and the ceiling where every draft is accepted.
// whale bench --tokenizer PATH --docs FILE.jsonl [-r REPEATS]
//   Encode throughput of the tokenizer, single thread, over documents (one JSON string per line).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/model_bench.h"
#include "runtime/model_bundle.h"
#include "runtime/kv_bench.h"
#include "tokenizer/tokenizer.h"

namespace whale {

namespace {
struct BenchOptions {
  std::string tokenizer, docs, model, spec, load = "auto", numerics = "auto";
  int repeats = 5, threads = 0, draft = 2;
  int64_t n_prompt = 512, n_gen = 128, depth = 0;
  bool json = false;
  std::string kv_disk;  // --kv-tiers: the disk tier's directory
  int sessions = 8;
  int64_t session_tokens = 2048;
};

void bench_kv_cli(const BenchOptions& o) {
  ThreadPool pool(o.threads);
  auto model = Model::load(resolve_model(o.model), pool, parse_load_mode(o.load));
  apply_numerics(*model, o.numerics);
  KVBenchOptions ko;
  ko.disk_dir = o.kv_disk;
  ko.prompt_tokens = o.n_prompt;
  ko.sessions = o.sessions;
  ko.session_tokens = o.session_tokens;
  const KVBenchResult r = bench_kv_tiers(*model, ko);
  auto median = [](std::vector<double> v) { return Spread::of(std::move(v)).median; };
  auto maxv = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); };
  const double disk_bw = r.disk_load_seconds > 0 ? double(r.disk_read_bytes) / r.disk_load_seconds : 0;
  nlohmann::ordered_json j = {
      {"model", o.model}, {"threads", pool.size()}, {"prompt_tokens", r.prompt_tokens}, {"blocks", r.blocks},
      {"block_bytes", r.block_bytes}, {"ttft_seconds", {{"cold", r.cold}, {"pool", r.pool}, {"ram", r.ram}, {"disk", r.disk}}},
      {"cached_tokens", {{"pool", r.cached_pool}, {"ram", r.cached_ram}, {"disk", r.cached_disk}}},
      {"disk_hit_speedup", r.cold / r.disk}, {"disk_read_bytes", r.disk_read_bytes}, {"disk_load_seconds", r.disk_load_seconds},
      {"disk_read_gbs", disk_bw / 1e9}, {"disk_sequential_gbs", r.disk_sequential_bw / 1e9},
      {"disk_read_fraction", r.disk_sequential_bw > 0 ? disk_bw / r.disk_sequential_bw : 0.0},
      {"outputs_equal", r.outputs_equal}};
  if (r.sessions > 0)
    j["sessions"] = {{"count", r.sessions}, {"tokens", r.session_tokens}, {"ram_capacity", r.ram_capacity},
                     {"cold_ttft_median", median(r.session_cold)}, {"cold_ttft_max", maxv(r.session_cold)},
                     {"resumed_ttft_median", median(r.session_resumed)}, {"resumed_ttft_max", maxv(r.session_resumed)},
                     {"resumed_tokens", {{"ram", r.resumed_ram_tokens}, {"disk", r.resumed_disk_tokens}, {"computed", r.resumed_computed_tokens}}}};
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("model: %s, %d threads; a %lld-token prompt: %lld blocks of %.2f MiB\n", o.model.c_str(), pool.size(),
                (long long)r.prompt_tokens, (long long)r.blocks, double(r.block_bytes) / (1 << 20));
    std::printf("| time to first token | seconds | speedup over cold | tokens from the cache |\n|---|---|---|---|\n");
    std::printf("| cold | %.3f | 1x | 0 |\n", r.cold);
    std::printf("| engine pool hit | %.3f | %.0fx | %lld |\n", r.pool, r.cold / r.pool, (long long)r.cached_pool);
    std::printf("| RAM tier hit | %.3f | %.0fx | %lld |\n", r.ram, r.cold / r.ram, (long long)r.cached_ram);
    std::printf("| disk tier hit after a restart | %.3f | %.0fx | %lld |\n", r.disk, r.cold / r.disk, (long long)r.cached_disk);
    std::printf("disk hit: %.1f MiB read and verified in %.3f s = %.2f GB/s; the disk reads %.2f GB/s sequentially (%.0f%%)\n",
                double(r.disk_read_bytes) / (1 << 20), r.disk_load_seconds, disk_bw / 1e9, r.disk_sequential_bw / 1e9,
                r.disk_sequential_bw > 0 ? 100 * disk_bw / r.disk_sequential_bw : 0.0);
    if (r.sessions > 0)
      std::printf("%d sessions of %lld tokens, 4 at a time, RAM tier %.1f MiB (half of them): time to first token cold median "
                  "%.2f s (last %.2f s); resumed median %.2f s (last %.2f s) with %lld tokens from RAM, %lld from disk, %lld computed\n",
                  r.sessions, (long long)r.session_tokens, double(r.ram_capacity) / (1 << 20), median(r.session_cold),
                  maxv(r.session_cold), median(r.session_resumed), maxv(r.session_resumed), (long long)r.resumed_ram_tokens,
                  (long long)r.resumed_disk_tokens, (long long)r.resumed_computed_tokens);
    std::printf("outputs of every hit equal the cold run's: %s\n", r.outputs_equal ? "yes" : "NO");
  }
  if (!r.outputs_equal) fail("kv bench: a cache hit changed the output");
}

void bench_model_cli(const BenchOptions& o) {
  ThreadPool pool(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  auto model = Model::load(resolve_model(o.model), pool, parse_load_mode(o.load));
  apply_numerics(*model, o.numerics);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const ModelConfig& c = model->config();
  // What --load did: auto decides per file, so a sharded checkpoint can end up partly copied.
  const size_t file_bytes = model->tensors().total_bytes(), copied = model->tensors().copied_bytes();
  const std::string how = copied == 0 ? "mapped" : copied == file_bytes ? "copied" : "partly copied";
  const std::string loaded = o.load + ": " + how;
  nlohmann::ordered_json j = {{"model", o.model}, {"architecture", c.architecture}, {"threads", pool.size()},
                              {"weights_bytes", model->weights().weight_bytes}, {"load_mode", o.load},
                              {"file_bytes", file_bytes}, {"copied_bytes", copied}, {"loaded", how}, {"load_seconds", load_s}};
  if (o.spec.empty()) {
    BenchResult r = bench_model(*model, o.n_prompt, o.n_gen, o.repeats, pool, o.depth);
    const double roofline = r.bandwidth / r.decode_bytes;
    j["depth"] = o.depth;
    j["pp"] = {{"tokens", o.n_prompt}, {"median", r.pp.median}, {"min", r.pp.min}, {"max", r.pp.max}};
    j["tg"] = {{"tokens", o.n_gen}, {"median", r.tg.median}, {"min", r.tg.min}, {"max", r.tg.max}};
    j["peak_rss_bytes"] = r.peak_rss_bytes;
    j["read_bandwidth_gbs"] = r.bandwidth / 1e9;
    j["decode_bytes_per_token"] = r.decode_bytes;
    j["roofline_tokens_per_second"] = roofline;
    j["roofline_fraction"] = r.tg.median / roofline;
    if (o.json) {
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf("model: %s (%s), %.1f MiB of weights, %d threads, loaded (%s) in %.3f s\n", o.model.c_str(),
                c.architecture.c_str(), double(model->weights().weight_bytes) / (1 << 20), pool.size(), loaded.c_str(), load_s);
    std::printf("| test | tokens/s (median) | min | max |\n|---|---|---|---|\n");
    const std::string at = o.depth > 0 ? " @ d" + std::to_string(o.depth) : "";
    if (o.n_prompt > 0) std::printf("| pp%lld%s | %.2f | %.2f | %.2f |\n", (long long)o.n_prompt, at.c_str(), r.pp.median, r.pp.min, r.pp.max);
    if (o.n_gen > 0) std::printf("| tg%lld%s | %.2f | %.2f | %.2f |\n", (long long)o.n_gen, at.c_str(), r.tg.median, r.tg.min, r.tg.max);
    std::printf("peak RSS %.1f MiB; read bandwidth %.1f GB/s; decode reads %.1f MiB/token -> roofline %.1f tokens/s; "
                "tg at %.0f%% of the roofline\n",
                double(r.peak_rss_bytes) / (1 << 20), r.bandwidth / 1e9, r.decode_bytes / (1 << 20), roofline,
                100 * r.tg.median / roofline);
    return;
  }
  if (o.spec != "mtp") fail("--spec: only 'mtp' is supported");
  SpecBenchResult r = bench_speculative(*model, o.n_prompt, o.n_gen, o.draft, o.repeats);
  j["draft"] = o.draft;
  j["plain_tokens_per_second"] = r.plain_tps.median;
  j["spec_tokens_per_second"] = r.spec_tps.median;
  j["ceiling_tokens_per_second"] = r.ceiling_tps.median;
  j["speedup"] = r.spec_tps.median / r.plain_tps.median;
  j["ceiling_speedup"] = r.ceiling_tps.median / r.plain_tps.median;
  std::vector<double> acceptance_at;  // per draft position: the fraction of verify steps that kept it
  for (uint64_t a : r.accepted_at) acceptance_at.push_back(r.rounds ? double(a) / double(r.rounds) : 0.0);
  j["acceptance_rate"] = r.acceptance_rate();
  j["tokens_per_round"] = r.tokens_per_round();
  j["acceptance_at"] = acceptance_at;
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model: %s, MTP speculative decoding, draft %d, greedy, %lld tokens after a %lld-token prompt, %d threads\n",
              o.model.c_str(), o.draft, (long long)o.n_gen, (long long)o.n_prompt, pool.size());
  std::printf("| decoding | tokens/s (median) | min | max | speedup |\n|---|---|---|---|---|\n");
  std::printf("| plain | %.2f | %.2f | %.2f | 1.00x |\n", r.plain_tps.median, r.plain_tps.min, r.plain_tps.max);
  std::printf("| mtp | %.2f | %.2f | %.2f | %.2fx |\n", r.spec_tps.median, r.spec_tps.min, r.spec_tps.max,
              r.spec_tps.median / r.plain_tps.median);
  std::printf("| all drafts accepted (ceiling) | %.2f | %.2f | %.2f | %.2fx |\n", r.ceiling_tps.median, r.ceiling_tps.min,
              r.ceiling_tps.max, r.ceiling_tps.median / r.plain_tps.median);
  std::printf("acceptance %.1f%% (%.2f tokens per verify step); by draft position:", 100 * r.acceptance_rate(),
              r.tokens_per_round());
  for (size_t i = 0; i < acceptance_at.size(); ++i) std::printf(" %zu: %.1f%%", i + 1, 100 * acceptance_at[i]);
  std::printf("\n");
}

void bench_tokenizer(const BenchOptions& o) {
  auto tok = load_tokenizer(resolve_model(o.tokenizer));
  std::ifstream in(o.docs);
  if (!in) fail(o.docs, ": cannot open");
  std::vector<std::string> docs;
  std::string line;
  size_t bytes = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_string()) fail(o.docs, ": line ", docs.size() + 1, " is not a JSON string");
    docs.push_back(j.get<std::string>());
    bytes += docs.back().size();
  }
  std::vector<double> secs;
  size_t tokens = 0;
  std::vector<int32_t> ids;
  for (int r = 0; r < o.repeats + 1; ++r) {  // the first pass warms caches and is not counted
    tokens = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& d : docs) {
      ids.clear();
      tok->encode_into(d, ids);
      tokens += ids.size();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) secs.push_back(s);
  }
  std::sort(secs.begin(), secs.end());
  const double median = secs[secs.size() / 2];
  nlohmann::json out = {{"docs", docs.size()},        {"bytes", bytes},
                        {"tokens", tokens},           {"median_seconds", median},
                        {"min_seconds", secs.front()}, {"max_seconds", secs.back()},
                        {"mb_per_second", double(bytes) / median / 1e6}};
  std::printf("%s\n", out.dump().c_str());
}
}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Benchmarks: model throughput (pp/tg, MTP speculation) or tokenizer speed");
  cmd->add_option("--model", o->model, "Model directory or GGUF file to benchmark (\"default\": the embedded model)");
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens for pp (default 512)")->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens for tg (default 128)")->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("-d,--depth", o->depth, "Context tokens before pp and tg, served from the prefix cache (llama-bench's -d; default 0)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 21));
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--spec", o->spec, "Speculative decoding to compare against plain decoding: mtp");
  cmd->add_option("--draft", o->draft, "Draft tokens per verify step (default 2)")->check(CLI::Range(1, 8));
  cmd->add_flag("--json", o->json, "Print one JSON object");
  add_load_option(cmd, o->load, o->numerics);
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer to benchmark (model directory or tokenizer.json)");
  cmd->add_option("--docs", o->docs, "Documents to encode: one JSON string per line");
  cmd->add_option("-r,--repeats", o->repeats, "Timed repeats after one warm-up (default 5)")->check(CLI::Range(1, 1000));
  cmd->add_option("--kv-tiers", o->kv_disk,
                  "DIR: time to first token of a -p token prompt cold and from each KV-cache tier (blocks in a fresh directory in DIR), "
                  "then --sessions at once");
  cmd->add_option("--sessions", o->sessions, "With --kv-tiers: concurrent sessions (default 8; 0: none)")->check(CLI::Range(0, 256));
  cmd->add_option("--session-tokens", o->session_tokens, "With --kv-tiers: tokens per session (default 2048)")
      ->check(CLI::Range(int64_t(32), int64_t(1) << 20));
  cmd->callback([o] {
    if (!o->model.empty() && !o->kv_disk.empty()) return bench_kv_cli(*o);
    if (!o->model.empty()) return bench_model_cli(*o);
    if (o->tokenizer.empty() || o->docs.empty()) fail("bench: give --model, or --tokenizer and --docs");
    bench_tokenizer(*o);
  });
}

}  // namespace whale
