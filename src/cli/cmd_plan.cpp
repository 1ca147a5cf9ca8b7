// whale plan --config FILE [--context N] [--gpus N] [--json]
// Parameters (total and activated per token, by component), weight bytes per storage type,
// KV cache, FLOPs per token, and the memory for one CPU host or each GPU of an
// expert-parallel group.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/mmap.h"
#include "model/plan.h"

namespace whale {

namespace {
struct PlanOptions {
  std::string config;
  int64_t context = 131072;
  int gpus = 8;
  bool json = false;
};

double B(double params) { return params / 1e9; }
double GiB(double bytes) { return bytes / double(1 << 30); }

void run(const PlanOptions& o) {
  auto j = nlohmann::json::parse(read_text_file(o.config), nullptr, false);
  if (j.is_discarded()) fail(o.config, ": not valid JSON");
  const Plan p = make_plan(j, o.config, o.context);
  const double kv_ctx = p.kv_bytes_per_token() * double(o.context);
  double routed = 0;
  for (const auto& g : p.groups)
    if (g.name == "routed experts") routed = g.params;
  // Expert parallelism: routed experts split over the GPUs, everything else replicated (FP8).
  const double per_gpu = (p.bytes_fp8() - routed * (1.0 + 4.0 / (128 * 128))) + routed * (1.0 + 4.0 / (128 * 128)) / o.gpus + kv_ctx;

  if (o.json) {
    nlohmann::ordered_json out = {{"config", o.config}, {"architecture", p.architecture}, {"layers", p.layers}};
    for (const auto& g : p.groups) out["parameters"][g.name] = {{"total", g.params}, {"activated", g.activated}};
    out["parameters"]["mtp"] = {{"total", p.mtp.params}, {"activated", p.mtp.activated}};
    out["total_parameters"] = p.total();
    out["activated_parameters"] = p.activated();
    out["weight_bytes"] = {{"bf16", p.bytes_bf16()}, {"fp8", p.bytes_fp8()}, {"q4_k", p.bytes_q4()}};
    out["kv_cache"] = {{"values_per_token", p.kv_values_per_token}, {"bytes_per_token_bf16", p.kv_bytes_per_token()},
                       {"context", o.context}, {"bytes_at_context", kv_ctx},
                       {"whale_bytes_per_token", p.whale_bytes_per_token},
                       {"whale_window_bytes_per_token", p.whale_window_bytes_per_token}, {"window_tokens", p.window_tokens}};
    for (const PlanCache& k : p.caches)
      out["kv_cache"]["kinds"].push_back({{"name", k.name}, {"layers", k.layers}, {"values_per_token_per_layer", k.values},
                                          {"official_bytes_per_token_per_layer", k.official_bytes}, {"ring_tokens", k.ring}});
    if (!p.caches.empty()) out["kv_cache"]["official_bytes_at_context"] = p.official_cache_bytes(o.context);
    out["flops_per_token"] = {{"decode", p.decode_flops}, {"prefill", p.prefill_flops}};
    out["memory"] = {{"cpu_host_fp8", p.bytes_fp8() + kv_ctx}, {"cpu_host_q4_k", p.bytes_q4() + kv_ctx},
                     {"gpus", o.gpus}, {"per_gpu_fp8_expert_parallel", per_gpu}};
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("%s: %s, %lld layers\n\n", o.config.c_str(), p.architecture.c_str(), (long long)p.layers);
  std::printf("| parameters | total | activated per token |\n|---|---|---|\n");
  for (const auto& g : p.groups) std::printf("| %s | %.3fB | %.3fB |\n", g.name.c_str(), B(g.params), B(g.activated));
  std::printf("| **total** | **%.2fB** | **%.2fB** |\n", B(p.total()), B(p.activated()));
  if (p.mtp.params > 0) std::printf("| MTP modules (besides the total) | %.3fB | %.3fB |\n", B(p.mtp.params), B(p.mtp.activated));
  std::printf("\nActivated: what a token is multiplied by (the input embedding is a lookup and not counted).\n\n");
  std::printf("| weights (model + MTP) | size |\n|---|---|\n");
  std::printf("| BF16 | %.1f GiB |\n| FP8 e4m3, 128x128 scales (embeddings, head, norms, routers BF16) | %.1f GiB |\n"
              "| Q4_K (4.5 bits/weight) | %.1f GiB |\n\n",
              GiB(p.bytes_bf16()), GiB(p.bytes_fp8()), GiB(p.bytes_q4()));
  std::printf("KV cache (BF16): %.0f values = %.1f KiB per token; %.2f GiB at %lld tokens\n", p.kv_values_per_token,
              p.kv_bytes_per_token() / 1024, GiB(kv_ctx), (long long)o.context);
  std::printf("whale's cache (float32): %.2f KiB per token", p.whale_bytes_per_token / 1024);
  if (p.window_tokens > 0)
    std::printf(" + windows of %lld tokens at %.1f KiB per token (%.1f MiB per sequence, kept only for its last blocks)",
                (long long)p.window_tokens, p.whale_window_bytes_per_token / 1024,
                p.whale_window_bytes_per_token * double(p.window_tokens) / (1 << 20));
  std::printf("\n");
  if (!p.caches.empty()) {
    std::printf("\n| cache, per token and layer | layers | values | bytes as DeepSeek stores them |\n|---|---|---|---|\n");
    for (const PlanCache& k : p.caches)
      std::printf("| %s | %lld | %.4g | %.4g |\n", k.name.c_str(), (long long)k.layers, k.values, k.official_bytes);
    std::printf("\nKV cache as DeepSeek stores it, one sequence:");
    std::vector<int64_t> at = {int64_t(131072), int64_t(1) << 20};
    if (o.context != at[0] && o.context != at[1]) at.push_back(o.context);
    for (size_t i = 0; i < at.size(); ++i)
      std::printf("%s %.2f GiB at %lld tokens", i ? ";" : "", GiB(p.official_cache_bytes(at[i])), (long long)at[i]);
    std::printf("\n");
  }
  std::printf("FLOPs per token at %lld tokens of context: decode %.1f GFLOP, prefill %.1f GFLOP\n", (long long)o.context,
              p.decode_flops / 1e9, p.prefill_flops / 1e9);
  std::printf("Memory, weights + one %lld-token sequence: CPU host %.1f GiB (FP8) / %.1f GiB (Q4_K); "
              "per GPU with expert parallelism over %d GPUs %.1f GiB (FP8)\n",
              (long long)o.context, GiB(p.bytes_fp8() + kv_ctx), GiB(p.bytes_q4() + kv_ctx), o.gpus, GiB(per_gpu));
}
}  // namespace

void register_plan(CLI::App& app) {
  auto o = std::make_shared<PlanOptions>();
  auto* cmd = app.add_subcommand("plan", "Parameters, bytes, KV cache, FLOPs and memory of a model configuration");
  cmd->add_option("--config", o->config, "config.json of a DeepSeek V2/V3/V4 or whale R2 model")->required();
  cmd->add_option("--context", o->context, "Context length for cache, FLOPs and memory (default 131072)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--gpus", o->gpus, "GPUs for the expert-parallel estimate (default 8)")->check(CLI::Range(1, 4096));
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->callback([o] { run(*o); });
}

}  // namespace whale
