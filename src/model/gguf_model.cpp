#include "model/gguf_model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <span>

#include "core/error.h"

namespace whale {

using json = nlohmann::json;


namespace {

// Metadata access with the file and key in every error. `arch`: deepseek2, deepseek32 for
// DeepSeek-V3.2 (deepseek2's layout plus the lightning indexer), or deepseek4.
struct Meta {
  const GgufFile& f;
  std::string arch;
  std::string key(const std::string& k) const { return arch + "." + k; }
  const GgufValue* find(const std::string& k) const { return f.find(key(k)); }
  int64_t integer(const std::string& k) const {
    const GgufValue& v = f.get(key(k));
    if (v.type == GgufValue::ARRAY)
      fail(f.path(), ": metadata '", key(k), "' is a per-layer array; whale needs one value for all layers");
    return v.as_int();
  }
  int64_t integer(const std::string& k, int64_t fallback) const { return find(k) ? integer(k) : fallback; }
  double number(const std::string& k, double fallback) const {
    const GgufValue* v = find(k);
    return v ? v->as_double() : fallback;
  }
  // A per-layer array of numbers (or one number for all layers).
  std::vector<double> numbers(const std::string& k) const {
    const GgufValue& v = f.get(key(k));
    std::vector<double> out;
    if (v.type != GgufValue::ARRAY) return {v.as_double()};
    for (const GgufValue& e : v.array) out.push_back(e.as_double());
    return out;
  }
  bool flag(const std::string& k, bool fallback) const {
    const GgufValue* v = find(k);
    if (!v) return fallback;
    if (v->type != GgufValue::BOOL) fail(f.path(), ": metadata '", key(k), "' is not a bool");
    return std::get<bool>(v->scalar);
  }
};

// YaRN from rope.scaling.* (llama.cpp's converter stores 0.1·mscale_all_dim as the log multiplier).
void read_yarn(const Meta& m, ModelConfig& c) {
  const GgufValue* t = m.find("rope.scaling.type");
  if (!t) return;
  if (t->as_string() == "yarn") {
    c.yarn.enabled = true;
    c.yarn.factor = m.number("rope.scaling.factor", 1.0);
    c.yarn.original_max_position_embeddings = m.integer("rope.scaling.original_context_length");
    c.yarn.beta_fast = m.number("rope.scaling.yarn_beta_fast", 32.0);
    c.yarn.beta_slow = m.number("rope.scaling.yarn_beta_slow", 1.0);
    // DeepSeek's configs have mscale == mscale_all_dim, which makes the cos/sin factor exactly 1.
    const double log_mul = m.number("rope.scaling.yarn_log_multiplier", 0.0);
    c.yarn.mscale_all_dim = log_mul / 0.1;
    c.yarn.mscale = c.yarn.mscale_all_dim;
  } else if (t->as_string() != "none") {
    fail(m.f.path(), ": rope scaling type '", t->as_string(), "' is not supported (yarn or none)");
  }
}

// deepseek4 (llama.cpp's DeepSeek-V4): the fields parse_v4 reads from config.json, from the keys
// llama.cpp's converter writes (conversion/deepseek.py, DeepseekV4Model.set_gguf_parameters).
ModelConfig deepseek4_config(const Meta& m) {
  const GgufFile& f = m.f;
  ModelConfig c;
  c.architecture = "DeepseekV4ForCausalLM";
  c.model_type = "gguf:deepseek4";
  c.num_nextn_predict_layers = m.integer("nextn_predict_layers", 0);
  c.num_hidden_layers = m.integer("block_count") - c.num_nextn_predict_layers;
  c.hidden_size = m.integer("embedding_length");
  c.max_position_embeddings = m.integer("context_length", 1048576);
  c.rms_norm_eps = m.number("attention.layer_norm_rms_epsilon", 1e-6);
  c.num_attention_heads = m.integer("attention.head_count");
  if (m.integer("attention.head_count_kv", 1) != 1)
    fail(f.path(), ": metadata '", m.key("attention.head_count_kv"), "' must be 1 (shared-KV attention)");
  c.head_dim = m.integer("attention.key_length");
  if (m.integer("attention.value_length", c.head_dim) != c.head_dim)
    fail(f.path(), ": metadata '", m.key("attention.value_length"), "' differs from key_length (V4 shares K and V)");
  c.q_lora_rank = m.integer("attention.q_lora_rank");
  c.qk_rope_head_dim = m.integer("rope.dimension_count");
  c.o_groups = m.integer("attention.output_group_count");
  c.o_lora_rank = m.integer("attention.output_lora_rank");
  c.sliding_window = m.integer("attention.sliding_window");
  c.index_n_heads = m.integer("attention.indexer.head_count");
  c.index_head_dim = m.integer("attention.indexer.key_length");
  c.index_topk = m.integer("attention.indexer.top_k");
  // One SwiGLU clamp for routed and shared experts in every layer (what V4 has).
  const std::vector<double> clamp = m.numbers("swiglu_clamp_exp");
  if (clamp.empty()) fail(f.path(), ": metadata '", m.key("swiglu_clamp_exp"), "' is empty");
  std::vector<double> all = clamp;
  if (m.find("swiglu_clamp_shexp")) {
    const std::vector<double> sh = m.numbers("swiglu_clamp_shexp");
    all.insert(all.end(), sh.begin(), sh.end());
  }
  for (double v : all)
    if (v != clamp[0]) fail(f.path(), ": metadata 'swiglu_clamp_exp' / 'swiglu_clamp_shexp' differ between layers; whale needs one clamp");
  c.swiglu_limit = clamp[0];
  c.hc_mult = m.integer("hyper_connection.count");
  c.hc_sinkhorn_iters = m.integer("hyper_connection.sinkhorn_iterations");
  c.hc_eps = m.number("hyper_connection.epsilon", 1e-6);
  c.num_hash_layers = m.integer("hash_layer_count", 0);

  // Attention type per layer: ratio 0 is a sliding-window layer; compressed layers with an
  // indexer are CSA, without one HCA (the ratios are 4 and 128 in the released models).
  const std::vector<double> ratios = m.numbers("attention.compress_ratios");
  if (int64_t(ratios.size()) < c.num_hidden_layers)
    fail(f.path(), ": metadata '", m.key("attention.compress_ratios"), "' has ", ratios.size(), " entries for ",
         c.num_hidden_layers, " layers");
  for (size_t i = 0; i < ratios.size(); ++i) {
    const int64_t r = int64_t(ratios[i]);
    if (r != ratios[i] || r < 0) fail(f.path(), ": metadata 'compress_ratios[", i, "]' is ", ratios[i]);
    if (r == 0) {
      c.layer_attention.push_back(LayerAttention::Sliding);
      continue;
    }
    // The MTP block's entry (past the layers) has no tensors to tell: by its ratio.
    const bool csa = int64_t(i) < c.num_hidden_layers ? f.tensor("blk." + std::to_string(i) + ".indexer.proj.weight") != nullptr
                                                      : r == c.compress_rate_csa;
    int64_t& rate = csa ? c.compress_rate_csa : c.compress_rate_hca;
    const bool first = std::none_of(c.layer_attention.begin(), c.layer_attention.end(),
                                    [&](LayerAttention a) { return a == (csa ? LayerAttention::CSA : LayerAttention::HCA); });
    if (!first && rate != r)
      fail(f.path(), ": metadata 'compress_ratios' has ", csa ? "CSA" : "HCA", " layers of ratios ", rate, " and ", r);
    rate = r;
    c.layer_attention.push_back(csa ? LayerAttention::CSA : LayerAttention::HCA);
  }
  while (int64_t(c.layer_attention.size()) < c.num_hidden_layers + std::max<int64_t>(1, c.num_nextn_predict_layers))
    c.layer_attention.push_back(LayerAttention::Sliding);

  c.n_routed_experts = m.integer("expert_count");
  c.num_experts_per_tok = m.integer("expert_used_count");
  c.n_shared_experts = m.integer("expert_shared_count", 1);
  c.moe_intermediate_size = m.integer("expert_feed_forward_length");
  c.intermediate_size = c.moe_intermediate_size;
  c.first_k_dense_replace = 0;
  c.norm_topk_prob = m.flag("expert_weights_norm", true);
  c.routed_scaling_factor = m.number("expert_weights_scale", 1.5);
  c.topk_method = TopkMethod::NoauxTc;
  c.n_group = c.topk_group = 1;
  // llama_expert_gating_func_type: 1 softmax, 2 sigmoid, 4 sqrt(softplus).
  const int64_t gating = m.integer("expert_gating_func", 4);
  if (gating != 1 && gating != 2 && gating != 4)
    fail(f.path(), ": metadata '", m.key("expert_gating_func"), "' = ", gating, " is not softmax (1), sigmoid (2) or sqrt-softplus (4)");
  c.scoring_func = gating == 4 ? ScoringFunc::SqrtSoftplus : gating == 2 ? ScoringFunc::Sigmoid : ScoringFunc::Softmax;

  c.rope_theta = m.number("rope.freq_base", 10000.0);
  c.compress_rope_theta = m.number("attention.compress_rope_freq_base", 160000.0);
  read_yarn(m, c);
  if (c.yarn.enabled) c.yarn.attention_factor = 1.0;  // V4 does not scale cos/sin (hf_config.cpp)

  const TensorRef* embd = f.tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) fail(f.path(), ": missing or malformed tensor 'token_embd.weight'");
  c.vocab_size = embd->shape[0];
  c.tie_word_embeddings = f.tensor("output.weight") == nullptr;
  c.cache_numerics = CacheNumerics::Official;  // as for the safetensors checkpoint (config.h)
  if (const GgufValue* v = f.find("tokenizer.ggml.bos_token_id")) c.bos_token_id = v->as_int();
  if (const GgufValue* v = f.find("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {v->as_int()};
  c.validate(f.path());
  return c;
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& f) {
  const GgufValue& arch = f.get("general.architecture");
  if (arch.type != GgufValue::STRING) fail(f.path(), ": metadata 'general.architecture' is not a string");
  if (arch.as_string() != "deepseek2" && arch.as_string() != "deepseek32" && arch.as_string() != "deepseek4")
    fail(f.path(), ": architecture '", arch.as_string(), "' is not supported (whale loads 'deepseek2', 'deepseek32' and "
         "'deepseek4', llama.cpp's names for DeepSeek-V2/V3, V3.2 and V4 models)");
  Meta m{f, arch.as_string()};
  if (m.arch == "deepseek4") return deepseek4_config(m);
  ModelConfig c;
  c.model_type = "gguf:" + m.arch;

  const int64_t blocks = m.integer("block_count");
  c.num_nextn_predict_layers = m.integer("nextn_predict_layers", 0);
  c.num_hidden_layers = blocks - c.num_nextn_predict_layers;
  c.hidden_size = m.integer("embedding_length");
  c.intermediate_size = m.integer("feed_forward_length");
  c.max_position_embeddings = m.integer("context_length", 4096);
  c.rms_norm_eps = m.number("attention.layer_norm_rms_epsilon", 1e-6);
  c.num_attention_heads = m.integer("attention.head_count");
  c.q_lora_rank = m.integer("attention.q_lora_rank", 0);
  c.kv_lora_rank = m.integer("attention.kv_lora_rank");
  c.qk_rope_head_dim = m.integer("rope.dimension_count");
  // Files converted since the split k_b/v_b layout carry the per-head MHA sizes in *_mla keys
  // (key_length/value_length then describe the latent "MQA" view); older ones only the latter.
  if (m.find("attention.key_length_mla")) {
    c.qk_nope_head_dim = m.integer("attention.key_length_mla") - c.qk_rope_head_dim;
    c.v_head_dim = m.integer("attention.value_length_mla");
  } else {
    c.qk_nope_head_dim = m.integer("attention.key_length") - c.qk_rope_head_dim;
    c.v_head_dim = m.integer("attention.value_length");
  }
  c.rope_theta = m.number("rope.freq_base", 10000.0);

  if (m.find("expert_count")) {
    c.n_routed_experts = m.integer("expert_count");
    c.num_experts_per_tok = m.integer("expert_used_count");
    c.n_shared_experts = m.integer("expert_shared_count", 0);
    c.moe_intermediate_size = m.integer("expert_feed_forward_length");
    c.first_k_dense_replace = m.integer("leading_dense_block_count", 0);
    c.routed_scaling_factor = m.number("expert_weights_scale", 1.0);
    c.norm_topk_prob = m.flag("expert_weights_norm", false);
    // llama_expert_gating_func_type: 1 softmax, 2 sigmoid; absent in V2-era files = softmax.
    const int64_t gating = m.integer("expert_gating_func", 1);
    if (gating != 1 && gating != 2)
      fail(f.path(), ": metadata '", m.key("expert_gating_func"), "' = ", gating, " is not softmax (1) or sigmoid (2)");
    c.scoring_func = gating == 2 ? ScoringFunc::Sigmoid : ScoringFunc::Softmax;
    c.n_group = m.integer("expert_group_count", 1);
    c.topk_group = m.integer("expert_group_used_count", 1);
    // The routing method is not stored; it follows from what the file holds: V3's correction
    // bias (exp_probs_b) means noaux_tc, groups without it V2's group-limited greedy.
    const bool has_bias = f.tensor("blk." + std::to_string(c.first_k_dense_replace) + ".exp_probs_b.bias") != nullptr;
    c.topk_method = has_bias ? TopkMethod::NoauxTc : c.n_group > 1 ? TopkMethod::GroupLimitedGreedy : TopkMethod::Greedy;
  }

  read_yarn(m, c);

  const TensorRef* embd = f.tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) fail(f.path(), ": missing or malformed tensor 'token_embd.weight'");
  c.vocab_size = embd->shape[0];
  c.tie_word_embeddings = f.tensor("output.weight") == nullptr;
  c.architecture = c.scoring_func == ScoringFunc::Sigmoid ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM";
  if (m.arch == "deepseek32") {
    c.architecture = "DeepseekV32ForCausalLM";
    c.index_n_heads = m.integer("attention.indexer.head_count");
    c.index_head_dim = m.integer("attention.indexer.key_length");
    c.index_topk = m.integer("attention.indexer.top_k");
    c.cache_numerics = CacheNumerics::Official;  // as for the safetensors checkpoint (config.h)
  }
  if (const GgufValue* v = f.find("tokenizer.ggml.bos_token_id")) c.bos_token_id = v->as_int();
  if (const GgufValue* v = f.find("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {v->as_int()};
  c.validate(f.path());
  return c;
}

namespace {

// GGUF name -> the name weights.cpp binds.
using Rename = std::pair<const char*, const char*>;

// deepseek2 / deepseek32: Hugging Face names.
constexpr Rename kHfGlobal[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
constexpr Rename kHfLayer[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_q_a.weight", "self_attn.q_a_proj.weight"},
    {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
    {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
    {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
    {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
    {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"},
    {"attn_k_b.weight", "self_attn.k_b_proj.weight"},
    {"attn_v_b.weight", "self_attn.v_b_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    // deepseek32: the lightning indexer
    {"indexer.attn_q_b.weight", "self_attn.indexer.wq_b.weight"},
    {"indexer.attn_k.weight", "self_attn.indexer.wk.weight"},
    {"indexer.k_norm.weight", "self_attn.indexer.k_norm.weight"},
    {"indexer.k_norm.bias", "self_attn.indexer.k_norm.bias"},
    {"indexer.proj.weight", "self_attn.indexer.weights_proj.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    {"ffn_gate_inp.weight", "mlp.gate.weight"},
    {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
    {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"},
    {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"},
    // MTP modules (blk.{num_hidden_layers + k}.nextn.*)
    {"nextn.eh_proj.weight", "eh_proj.weight"},
    {"nextn.enorm.weight", "enorm.weight"},
    {"nextn.hnorm.weight", "hnorm.weight"},
    {"nextn.embed_tokens.weight", "embed_tokens.weight"},
    {"nextn.shared_head_head.weight", "shared_head.head.weight"},
    {"nextn.shared_head_norm.weight", "shared_head.norm.weight"},
};
constexpr Rename kHfExperts[] = {
    {"ffn_gate_exps.weight", "gate_proj"}, {"ffn_up_exps.weight", "up_proj"}, {"ffn_down_exps.weight", "down_proj"}};

// deepseek4: DeepSeek's released names, the inverse of conversion/deepseek.py's _map_dsv4_tensor_name.
constexpr Rename kV4Global[] = {
    {"token_embd.weight", "embed.weight"},         {"output_norm.weight", "norm.weight"},
    {"output.weight", "head.weight"},              {"output_hc_base.weight", "hc_head_base"},
    {"output_hc_fn.weight", "hc_head_fn"},         {"output_hc_scale.weight", "hc_head_scale"},
};
constexpr Rename kV4Layer[] = {
    {"attn_norm.weight", "attn_norm.weight"},
    {"ffn_norm.weight", "ffn_norm.weight"},
    {"hc_attn_fn.weight", "hc_attn_fn"},
    {"hc_attn_base.weight", "hc_attn_base"},
    {"hc_attn_scale.weight", "hc_attn_scale"},
    {"hc_ffn_fn.weight", "hc_ffn_fn"},
    {"hc_ffn_base.weight", "hc_ffn_base"},
    {"hc_ffn_scale.weight", "hc_ffn_scale"},
    {"attn_sinks.weight", "attn.attn_sink"},
    {"attn_q_a.weight", "attn.wq_a.weight"},
    {"attn_q_b.weight", "attn.wq_b.weight"},
    {"attn_q_a_norm.weight", "attn.q_norm.weight"},
    {"attn_kv.weight", "attn.wkv.weight"},
    {"attn_kv_a_norm.weight", "attn.kv_norm.weight"},
    {"attn_output_a.weight", "attn.wo_a.weight"},
    {"attn_output_b.weight", "attn.wo_b.weight"},
    {"attn_compressor_ape.weight", "attn.compressor.ape"},
    {"attn_compressor_kv.weight", "attn.compressor.wkv.weight"},
    {"attn_compressor_gate.weight", "attn.compressor.wgate.weight"},
    {"attn_compressor_norm.weight", "attn.compressor.norm.weight"},
    {"indexer.attn_q_b.weight", "attn.indexer.wq_b.weight"},
    {"indexer.proj.weight", "attn.indexer.weights_proj.weight"},
    {"indexer_compressor_ape.weight", "attn.indexer.compressor.ape"},
    {"indexer_compressor_kv.weight", "attn.indexer.compressor.wkv.weight"},
    {"indexer_compressor_gate.weight", "attn.indexer.compressor.wgate.weight"},
    {"indexer_compressor_norm.weight", "attn.indexer.compressor.norm.weight"},
    {"ffn_gate_inp.weight", "ffn.gate.weight"},
    {"exp_probs_b.bias", "ffn.gate.bias"},
    {"ffn_gate_tid2eid.weight", "ffn.gate.tid2eid"},
    {"ffn_gate_shexp.weight", "ffn.shared_experts.w1.weight"},
    {"ffn_up_shexp.weight", "ffn.shared_experts.w3.weight"},
    {"ffn_down_shexp.weight", "ffn.shared_experts.w2.weight"},
};
constexpr Rename kV4Experts[] = {
    {"ffn_gate_exps.weight", "w1"}, {"ffn_up_exps.weight", "w3"}, {"ffn_down_exps.weight", "w2"}};

// How one architecture's GGUF names become the binder's: whole-model tensors, per-layer ones
// (blk.N.X -> layer_prefix N . Y) and stacked experts (-> layer_prefix N . experts_path E . Y.weight).
struct NameMap {
  std::span<const Rename> global, layer, experts;
  const char* layer_prefix;  // "model.layers." / "layers."
  const char* experts_path;  // "mlp.experts." / "ffn.experts."
};
constexpr NameMap kHfNames{kHfGlobal, kHfLayer, kHfExperts, "model.layers.", "mlp.experts."};
constexpr NameMap kV4Names{kV4Global, kV4Layer, kV4Experts, "layers.", "ffn.experts."};

}  // namespace

std::unique_ptr<TensorSet> gguf_tensor_set(std::shared_ptr<const GgufFile> f, const ModelConfig& c) {
  const NameMap& names = c.shared_kv() ? kV4Names : kHfNames;
  static const std::regex kBlock(R"(blk\.(\d+)\.(.+))");
  std::vector<TensorRef> out;
  for (const TensorRef& t : f->tensors()) {
    std::smatch m;
    bool mapped = false;
    for (const auto& [from, to] : names.global)
      if (t.name == from) {
        TensorRef r = t;
        r.name = to;
        out.push_back(std::move(r));
        mapped = true;
      }
    if (mapped) continue;
    if (!std::regex_match(t.name, m, kBlock)) continue;  // unknown extras (e.g. rope_freqs) are ignored
    const std::string p = names.layer_prefix + m[1].str() + ".", rest = m[2].str();
    for (const auto& [from, to] : names.layer)
      if (rest == from) {
        TensorRef r = t;
        r.name = p + to;
        // Split MLA layout: [H, kv_lora_rank, nope] and [H, v, kv_lora_rank] as stacked 2-D matrices.
        if ((rest == "attn_k_b.weight" || rest == "attn_v_b.weight") && r.shape.size() == 3)
          r.shape = {r.shape[0] * r.shape[1], r.shape[2]};
        out.push_back(std::move(r));
        mapped = true;
      }
    if (mapped) continue;
    for (const auto& [from, to] : names.experts) {
      if (rest != from) continue;
      // Stacked experts [E, out, in]: expert e is rows [e·out, (e+1)·out), a view.
      if (t.shape.size() != 3 || t.shape[0] != c.n_routed_experts || t.shape[0] <= 0)
        fail(f->path(), ": tensor '", t.name, "' has shape ", shape_str(t.shape), ", expected [", c.n_routed_experts,
             ", out, in]");
      const size_t bytes = t.nbytes / size_t(t.shape[0]);
      for (int64_t e = 0; e < t.shape[0]; ++e) {
        TensorRef r = t;
        r.name = p + names.experts_path + std::to_string(e) + "." + to + ".weight";
        r.shape = {t.shape[1], t.shape[2]};
        r.data = t.data + size_t(e) * bytes;
        r.nbytes = bytes;
        out.push_back(std::move(r));
      }
      mapped = true;
    }
    if (!mapped && (rest == "ffn_gate_up_exps.weight"))
      fail(f->path(), ": tensor '", t.name, "' (fused gate/up experts) is not supported; convert with separate gate and up");
  }
  return TensorSet::from_refs(f->path(), std::move(out), f, f->file_size(), f->copied());
}

}  // namespace whale
