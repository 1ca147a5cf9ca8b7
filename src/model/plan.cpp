#include "model/plan.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/hf_config.h"
#include "model/model.h"

namespace whale {

using json = nlohmann::json;

double Plan::total() const {
  double t = 0;
  for (const auto& g : groups) t += g.params;
  return t;
}

double Plan::activated() const {
  double t = 0;
  for (const auto& g : groups) t += g.activated;
  return t;
}

double Plan::bytes_bf16() const { return (total() + mtp.params) * 2; }

double Plan::bytes_fp8() const {
  double b = 0;
  auto add = [&](const PlanGroup& g) { b += g.quantizable ? g.params * (1.0 + 4.0 / (128 * 128)) : g.params * 2; };
  for (const auto& g : groups) add(g);
  add(mtp);
  return b;
}

double Plan::bytes_q4() const {
  double b = 0;
  auto add = [&](const PlanGroup& g) { b += g.params * (g.name == "norms" ? 4.0 : 4.5 / 8); };
  for (const auto& g : groups) add(g);
  add(mtp);
  return b;
}

namespace {

struct Tally {
  std::vector<PlanGroup> groups;
  PlanGroup& operator[](const std::string& name) {
    for (auto& g : groups)
      if (g.name == name) return g;
    // FP8 checkpoints keep embeddings, the LM head, norms, routers and mHC in BF16/F32.
    const bool quantizable = name != "norms" && name != "mHC" && name != "routers" && name != "embedding" && name != "LM head";
    groups.push_back({name, 0, 0, quantizable});
    return groups.back();
  }
  void add(const std::string& name, double params, double activated_fraction = 1.0) {
    (*this)[name].params += params;
    (*this)[name].activated += params * activated_fraction;
  }
  double total() const {
    double t = 0;
    for (const auto& g : groups) t += g.params;
    return t;
  }
  double activated() const {
    double t = 0;
    for (const auto& g : groups) t += g.activated;
    return t;
  }
};

// DeepSeek V2 / V3 / whale's R2: MLA + DeepSeekMoE (+ mHC, MTP).
Plan plan_mla(const json& j, const std::string& source, int64_t context) {
  const ModelConfig c = parse_hf_config(j.dump(), source);
  const double D = double(c.hidden_size), H = double(c.num_attention_heads), r = double(c.kv_lora_rank);
  const double rope = double(c.qk_rope_head_dim), nope = double(c.qk_nope_head_dim), v = double(c.v_head_dim);
  const double qk = nope + rope, n = double(c.hc_mult);

  auto attention = [&](Tally& t) {
    double a = c.q_lora_rank > 0 ? D * double(c.q_lora_rank) + double(c.q_lora_rank) * H * qk : D * H * qk;
    a += D * (r + rope) + r * H * (nope + v) + H * v * D;
    t.add("attention", a);
    t.add("norms", 2 * D + r + double(c.q_lora_rank));
    if (c.sparse_attention()) {  // V3.2's lightning indexer: wq_b, wk, weights_proj; k_norm with bias
      const double ih = double(c.index_n_heads), ihd = double(c.index_head_dim);
      t.add("indexer", double(c.q_lora_rank) * ih * ihd + D * ihd + D * ih);
      t.add("norms", 2 * ihd);
    }
  };
  auto ffn = [&](Tally& t, int64_t layer) {
    if (!c.is_moe_layer(layer)) {
      t.add("dense FFN", 3 * D * double(c.intermediate_size));
      return;
    }
    const double E = double(c.n_routed_experts), expert = 3 * D * double(c.moe_intermediate_size);
    t.add("routed experts", E * expert, double(c.num_experts_per_tok) / E);
    if (c.n_shared_experts > 0) t.add("shared experts", expert * double(c.n_shared_experts));
    t.add("routers", E * D + E);
  };
  auto mhc_sites = [&](Tally& t) {
    if (n > 0) t.add("mHC", 2 * ((2 + n) * n * n * D + (2 + n) * n + 3));
  };

  Tally main;
  main.add("embedding", double(c.vocab_size) * D, 0.0);  // a lookup, not a product
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    attention(main);
    ffn(main, l);
    mhc_sites(main);
  }
  if (n > 0) main.add("mHC", n * n * D + n + 1);  // hc_head
  main.add("norms", D);
  if (c.tie_word_embeddings) main["embedding"].activated += double(c.vocab_size) * D;
  else main.add("LM head", double(c.vocab_size) * D);

  Tally mtp;  // each module: its own block, projections and norms; embedding and head are shared
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    mtp.add("mtp", 2 * D * D + 3 * D);  // eh_proj, enorm, hnorm, shared_head.norm
    Tally block;
    attention(block);
    ffn(block, c.num_hidden_layers + k);
    mhc_sites(block);
    if (n > 0) block.add("mHC", n * n * D + n + 1);
    mtp["mtp"].params += block.total();
    mtp["mtp"].activated += block.activated() + double(c.vocab_size) * D;  // + the shared LM head
  }

  Plan p;
  p.architecture = c.architecture;
  p.layers = c.num_hidden_layers;
  p.groups = main.groups;
  p.mtp = mtp.groups.empty() ? PlanGroup{"mtp", 0, 0, true} : mtp.groups[0];
  p.context = context;
  p.kv_values_per_token = double(c.num_hidden_layers) * (r + rope + double(c.index_head_dim));
  if (c.sparse_attention()) {  // V3.2: FP8 latent with a float32 scale per 128, BF16 k_pe; FP8 index key + scale
    p.caches.push_back({"MLA latent (c_kv FP8, k_pe BF16)", c.num_hidden_layers, r + rope, r + 4 * std::ceil(r / 128) + 2 * rope});
    p.caches.push_back({"indexer key (FP8)", c.num_hidden_layers, double(c.index_head_dim),
                        double(c.index_head_dim) + 4 * std::ceil(double(c.index_head_dim) / 128)});
  } else {
    p.caches.push_back({"MLA latent (BF16)", c.num_hidden_layers, r + rope, 2 * (r + rope)});
  }
  const double L = double(c.num_hidden_layers), ctx = double(context);
  // Keys a token attends to: all of its context, or with sparse attention at most index_topk
  // (on average over a prompt: each position's min(position, topk)).
  const double K = c.sparse_attention() ? double(c.index_topk) : ctx;
  const double attended = std::min(ctx, K), attended_avg = ctx <= K ? ctx / 2 : K - K * K / (2 * ctx);
  // The indexer scores every cached key with each of its heads.
  const double index = c.sparse_attention() ? L * 2 * double(c.index_n_heads * c.index_head_dim) : 0;
  // Decode uses the absorbed form: scores over the r + rope latent, weighted sum over r.
  p.decode_flops = 2 * p.activated() + L * H * 2 * attended * (2 * r + rope) + index * ctx;
  // Prefill uses the MHA form: causal attention, on average over half the context.
  p.prefill_flops = 2 * p.activated() + L * H * 2 * attended_avg * (qk + v) + index * ctx / 2;
  return p;
}


// DeepSeek-V4: shared-KV attention with a sliding window and compressed (CSA/HCA) branches,
// grouped low-rank output, DeepSeekMoE in every layer, mHC. The config as released
// (compress_ratios) or in transformers' names; parse_hf_config reads both.
Plan plan_v4(const json& j, const std::string& source, int64_t context) {
  const ModelConfig c = parse_hf_config(j.dump(), source);
  const double D = double(c.hidden_size), H = double(c.num_attention_heads), hd = double(c.head_dim);
  const double q_lora = double(c.q_lora_rank), og = double(c.o_groups), o_lora = double(c.o_lora_rank);
  const double ih = double(c.index_n_heads), ihd = double(c.index_head_dim), topk = double(c.index_topk);
  const double window = double(c.sliding_window), rope = double(c.qk_rope_head_dim);
  const double E = double(c.n_routed_experts), K = double(c.num_experts_per_tok), I = double(c.moe_intermediate_size);
  const double S = double(c.n_shared_experts), n = double(c.hc_mult), vocab = double(c.vocab_size);
  const int64_t layers = c.num_hidden_layers;

  double kv_values = 0, attn_flops = 0;
  const double ctx = double(context);
  int64_t n_csa = 0, n_hca = 0;
  auto layer = [&](Tally& t, LayerAttention type, bool count_cache) {
    t.add("attention", D * q_lora + q_lora * H * hd + D * hd + og * o_lora * (H * hd / og) + D * og * o_lora + H);
    t.add("norms", 2 * D + q_lora + hd);
    const double m = double(c.compress_rate(type));
    const bool sparse = type == LayerAttention::CSA;
    if (m > 0) {
      const double width = sparse ? 2 * hd : hd;  // CSA compresses overlapping windows of 2m tokens
      t.add("attention", 2 * D * width + m * width);
      t.add("norms", hd);
      if (sparse) t.add("attention", q_lora * ih * ihd + 2 * D * 2 * ihd + D * ih + m * 2 * ihd + ihd);
    }
    t.add("routed experts", E * 3 * D * I, K / E);
    t.add("shared experts", S * 3 * D * I);
    t.add("routers", E * D + E);
    t.add("mHC", 2 * ((2 + n) * n * n * D + (2 + n) * n + 3));
    if (!count_cache) return;
    n_csa += sparse;
    n_hca += type == LayerAttention::HCA;
    // Long-context average: the window is bounded; compressed entries grow with the context.
    if (m > 0) kv_values += hd / m + (sparse ? ihd / m : 0);
    attn_flops += H * 2 * std::min(window, ctx) * 2 * hd;
    if (sparse) attn_flops += ih * 2 * (ctx / m) * ihd + H * 2 * std::min(topk, ctx / m) * 2 * hd;
    else if (m > 0) attn_flops += H * 2 * (ctx / m) * 2 * hd;
  };

  Tally main;
  main.add("embedding", vocab * D, 0.0);
  for (int64_t l = 0; l < layers; ++l) layer(main, c.attention_of(l), true);
  main.add("mHC", n * n * D + n + 1);
  main.add("norms", D);
  main.add("LM head", vocab * D);

  Tally mtp;
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {  // e_proj, h_proj, enorm, hnorm, a block, hc_head, norm
    Tally block;
    layer(block, c.attention_of(layers + k), false);
    mtp.add("mtp", 2 * D * D + 3 * D + n * n * D + n + 1);
    mtp["mtp"].params += block.total();
    mtp["mtp"].activated += block.activated() + vocab * D;
  }

  Plan p;
  p.architecture = "DeepseekV4ForCausalLM";
  p.layers = layers;
  p.groups = main.groups;
  p.mtp = mtp.groups.empty() ? PlanGroup{"mtp", 0, 0, true} : mtp.groups[0];
  p.context = context;
  p.kv_values_per_token = kv_values;
  // As DeepSeek's code stores them: kv vectors with FP8 non-RoPE dims (a float32 scale per 64)
  // and BF16 RoPE dims; indexer keys FP4 with a scale byte per 32. Per token: an entry / m.
  const double entry_bytes = (hd - rope) + 4 * std::ceil((hd - rope) / 64) + 2 * rope;
  const double index_bytes = ihd / 2 + std::ceil(ihd / 32);
  const double mc = double(c.compress_rate_csa), mh = double(c.compress_rate_hca);
  p.caches.push_back({"sliding window kv (a ring of sliding_window tokens)", layers, hd, entry_bytes, c.sliding_window});
  if (n_csa) {
    p.caches.push_back({"CSA compressed kv (1 per " + std::to_string(c.compress_rate_csa) + " tokens)", n_csa, hd / mc, entry_bytes / mc});
    p.caches.push_back({"CSA indexer keys (FP4)", n_csa, ihd / mc, index_bytes / mc});
  }
  if (n_hca) p.caches.push_back({"HCA compressed kv (1 per " + std::to_string(c.compress_rate_hca) + " tokens)", n_hca, hd / mh, entry_bytes / mh});
  p.decode_flops = 2 * p.activated() + attn_flops;
  p.prefill_flops = 2 * p.activated() + attn_flops / 2;
  return p;
}

}  // namespace

double Plan::official_cache_bytes(int64_t tokens) const {
  double b = 0;
  for (const PlanCache& k : caches)
    b += double(k.layers) * k.official_bytes * double(k.ring > 0 ? std::min<int64_t>(k.ring, tokens) : tokens);
  return b;
}

Plan make_plan(const json& config, const std::string& source, int64_t context) {
  if (!config.is_object()) fail(source, ": not a JSON object");
  if (context < 1) fail("context must be positive");
  std::string arch = config.value("model_type", "");
  if (config.contains("architectures") && config["architectures"].is_array() && !config["architectures"].empty() &&
      config["architectures"][0].is_string())
    arch = config["architectures"][0].get<std::string>();
  Plan p = arch == "DeepseekV4ForCausalLM" || arch == "deepseek_v4" ? plan_v4(config, source, context)
                                                                       : plan_mla(config, source, context);
  const ModelConfig c = parse_hf_config(config.dump(), source);
  p.whale_bytes_per_token = cache_bytes_per_token(c);
  for (const CacheGroupSpec& g : cache_groups_of(c))
    if (g.window > 0) {
      p.whale_window_bytes_per_token += double(g.n_layers * g.dim) * 4.0;
      p.window_tokens = std::max(p.window_tokens, g.window);
    }
  return p;
}

}  // namespace whale
