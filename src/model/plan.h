// Capacity planning for a DeepSeek-family configuration: parameters (total and activated per
// token, by component), weight bytes per storage type, KV-cache bytes, FLOPs per token, and the
// memory one CPU host or each GPU of an expert-parallel group needs.
//
// "Activated per token" counts the parameters a token is multiplied by: every dense weight,
// the LM head, the shared experts and top-k of the routed experts; the input embedding is a
// lookup and is not counted (the convention that reproduces DeepSeek-V3's published 37B).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace whale {

struct PlanGroup {
  std::string name;     // "attention", "routed experts", ...
  double params = 0;    // total
  double activated = 0; // per token
  bool quantizable = true;  // stored FP8 / Q4 in quantized checkpoints (projections); else BF16/F32
};

// One kind of cached state, per token and layer.
struct PlanCache {
  std::string name;         // "MLA latent", "indexer key", ...
  int64_t layers = 0;       // layers that hold it
  double values = 0;        // values per token per layer
  double official_bytes = 0;  // bytes per token per layer as DeepSeek's inference code stores it
  int64_t ring = 0;         // > 0: a ring of this many tokens per sequence (V4's window), not growing
};

struct Plan {
  std::string architecture;
  int64_t layers = 0;
  std::vector<PlanGroup> groups;  // the main model
  PlanGroup mtp;                  // MTP modules (separate, as DeepSeek reports them)
  double kv_values_per_token = 0; // cached values per token, all layers (the average over a long context for V4)
  std::vector<PlanCache> caches;  // by kind
  // Bytes of one sequence's cache at `tokens` tokens, as DeepSeek stores it (rings count once).
  double official_cache_bytes(int64_t tokens) const;
  int64_t context = 131072;
  // FLOPs per token: matmuls (2 per activated parameter) plus attention at the given context.
  double decode_flops = 0, prefill_flops = 0;

  double total() const;
  double activated() const;
  double bytes_bf16() const;
  double bytes_fp8() const;  // FP8 e4m3 projections with 128x128 f32 scales, the rest BF16
  double bytes_q4() const;   // Q4_K (4.5 bits per weight) for every matrix, norms F32
  double kv_bytes_per_token() const { return kv_values_per_token * 2; }  // BF16 cache
  // whale's own cache (float32, model/kv_pool.h): bytes per token of context, and the windowed
  // groups' bytes per token of window (V4: kept for the last window tokens of each sequence
  // only, their count in window_tokens); 0 without windows.
  double whale_bytes_per_token = 0, whale_window_bytes_per_token = 0;
  int64_t window_tokens = 0;
};

// From a config.json object: DeepseekV2/V3 (and whale's DeepseekR2) or DeepseekV4.
Plan make_plan(const nlohmann::json& config, const std::string& source, int64_t context = 131072);

}  // namespace whale
