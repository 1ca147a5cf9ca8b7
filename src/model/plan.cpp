#include "model/plan.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/hf_config.h"

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

int64_t get_int(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || !j[key].is_number_integer()) fail(source, ": field '", key, "' must be an integer");
  return j[key].get<int64_t>();
}

// DeepSeek-V4: shared-KV attention with a sliding window and compressed (CSA/HCA) branches,
// grouped low-rank output, DeepSeekMoE in every layer, mHC.
Plan plan_v4(const json& j, const std::string& source, int64_t context) {
  const double D = double(get_int(j, "hidden_size", source)), H = double(get_int(j, "num_attention_heads", source));
  const double hd = double(get_int(j, "head_dim", source)), q_lora = double(get_int(j, "q_lora_rank", source));
  const double og = double(get_int(j, "o_groups", source)), o_lora = double(get_int(j, "o_lora_rank", source));
  const double ih = double(get_int(j, "index_n_heads", source)), ihd = double(get_int(j, "index_head_dim", source));
  const double topk = double(get_int(j, "index_topk", source)), window = double(get_int(j, "sliding_window", source));
  const double E = double(get_int(j, "n_routed_experts", source)), K = double(get_int(j, "num_experts_per_tok", source));
  const double I = double(get_int(j, "moe_intermediate_size", source)), S = double(get_int(j, "n_shared_experts", source));
  const double n = double(get_int(j, "hc_mult", source)), vocab = double(get_int(j, "vocab_size", source));
  const int64_t layers = get_int(j, "num_hidden_layers", source);
  const int64_t n_mtp = j.value("num_nextn_predict_layers", 0);
  if (!j.contains("layer_types") || !j["layer_types"].is_array() || int64_t(j["layer_types"].size()) < layers)
    fail(source, ": field 'layer_types' must list the attention type of every layer");
  const json rates = j.value("compress_rates", json::object());
  auto ratio_of = [&](const std::string& type) -> double {
    if (type == "sliding_attention") return 0;
    if (!rates.contains(type) || !rates[type].is_number()) fail(source, ": no compress rate for layer type '", type, "'");
    return rates[type].get<double>();
  };

  double kv_values = 0, attn_flops = 0;
  const double ctx = double(context);
  auto layer = [&](Tally& t, const std::string& type, bool count_cache) {
    t.add("attention", D * q_lora + q_lora * H * hd + D * hd + og * o_lora * (H * hd / og) + D * og * o_lora + H);
    t.add("norms", 2 * D + q_lora + hd);
    const double m = ratio_of(type);
    const bool sparse = type == "compressed_sparse_attention";
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
    // Long-context average: the window is bounded; compressed entries grow with the context.
    if (m > 0) kv_values += hd / m + (sparse ? ihd / m : 0);
    attn_flops += H * 2 * std::min(window, ctx) * 2 * hd;
    if (sparse) attn_flops += ih * 2 * (ctx / m) * ihd + H * 2 * std::min(topk, ctx / m) * 2 * hd;
    else if (m > 0) attn_flops += H * 2 * (ctx / m) * 2 * hd;
  };

  Tally main;
  main.add("embedding", vocab * D, 0.0);
  for (int64_t l = 0; l < layers; ++l) layer(main, j["layer_types"][size_t(l)].get<std::string>(), true);
  main.add("mHC", n * n * D + n + 1);
  main.add("norms", D);
  main.add("LM head", vocab * D);

  Tally mtp;
  for (int64_t k = 0; k < n_mtp; ++k) {  // e_proj, h_proj, enorm, hnorm, a block, hc_head, norm
    Tally block;
    layer(block, j["layer_types"][size_t(layers - 1)].get<std::string>(), false);
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
  p.decode_flops = 2 * p.activated() + attn_flops;
  p.prefill_flops = 2 * p.activated() + attn_flops / 2;
  return p;
}

}  // namespace

Plan make_plan(const json& config, const std::string& source, int64_t context) {
  if (!config.is_object()) fail(source, ": not a JSON object");
  if (context < 1) fail("context must be positive");
  std::string arch = config.value("model_type", "");
  if (config.contains("architectures") && config["architectures"].is_array() && !config["architectures"].empty() &&
      config["architectures"][0].is_string())
    arch = config["architectures"][0].get<std::string>();
  if (arch == "DeepseekV4ForCausalLM" || arch == "deepseek_v4") return plan_v4(config, source, context);
  return plan_mla(config, source, context);
}

}  // namespace whale
