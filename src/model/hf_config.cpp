#include "model/hf_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"

namespace whale {

using json = nlohmann::json;

namespace {

// Typed, checked access to config fields: a present field of the wrong type is an error.
class Fields {
 public:
  Fields(const json& j, std::string source, std::string prefix = "")
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t integer(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 1e15)
      return int64_t(v.get<double>());
    bad(key, "an integer");
  }
  int64_t required_integer(const char* key) const {
    if (!has(key)) fail(source_, ": missing field '", prefix_, key, "'");
    return integer(key, 0);
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) bad(key, "a number");
    return v.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) bad(key, "true or false");
    return v.get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) bad(key, "a string");
    return v.get<std::string>();
  }
  [[noreturn]] void bad(const char* key, const char* expected) const {
    fail(source_, ": field '", prefix_, key, "' must be ", expected, " (got ", j_.at(key).dump(), ")");
  }

 private:
  const json& j_;
  std::string source_, prefix_;
};

}  // namespace

const char* to_string(ScoringFunc f) {
  return f == ScoringFunc::Softmax ? "softmax" : f == ScoringFunc::Sigmoid ? "sigmoid" : "sqrtsoftplus";
}
const char* to_string(LayerAttention a) {
  switch (a) {
    case LayerAttention::MLA: return "mla";
    case LayerAttention::Sliding: return "sliding_attention";
    case LayerAttention::CSA: return "compressed_sparse_attention";
    case LayerAttention::HCA: return "heavily_compressed_attention";
  }
  return "?";
}
const char* to_string(CacheNumerics n) { return n == CacheNumerics::Float ? "float" : "official"; }
CacheNumerics parse_cache_numerics(const std::string& name) {
  if (name == "float") return CacheNumerics::Float;
  if (name == "official") return CacheNumerics::Official;
  fail("unknown numerics '", name, "' (expected official or float)");
}
const char* to_string(TopkMethod m) {
  switch (m) {
    case TopkMethod::Greedy: return "greedy";
    case TopkMethod::GroupLimitedGreedy: return "group_limited_greedy";
    case TopkMethod::NoauxTc: return "noaux_tc";
  }
  return "?";
}

namespace {

YarnConfig parse_yarn(const json& r_json, const std::string& source, const std::string& prefix, int64_t max_pos) {
  Fields r(r_json, source, prefix);
  YarnConfig y;
  y.enabled = true;
  y.original_max_position_embeddings = r.required_integer("original_max_position_embeddings");
  y.factor = r.has("factor") ? r.number("factor", 1.0) : double(max_pos) / double(y.original_max_position_embeddings);
  y.beta_fast = r.number("beta_fast", 32.0);
  y.beta_slow = r.number("beta_slow", 1.0);
  if (y.beta_fast == 0) y.beta_fast = 32.0;  // HF: `get("beta_fast") or 32`
  if (y.beta_slow == 0) y.beta_slow = 1.0;
  y.mscale = r.number("mscale", 0.0);
  y.mscale_all_dim = r.number("mscale_all_dim", 0.0);
  y.attention_factor = r.number("attention_factor", -1.0);
  y.truncate = r.boolean("truncate", true);
  return y;
}

LayerAttention layer_attention_named(const std::string& s, const std::string& source, size_t i) {
  if (s == "sliding_attention") return LayerAttention::Sliding;
  if (s == "compressed_sparse_attention") return LayerAttention::CSA;
  if (s == "heavily_compressed_attention") return LayerAttention::HCA;
  fail(source, ": field 'layer_types[", i, "]' is \"", s,
       "\"; expected sliding_attention, compressed_sparse_attention or heavily_compressed_attention");
}

// DeepSeek-V4 (DeepseekV4ForCausalLM): the released config.json (compress_ratios,
// qk_rope_head_dim, num_hash_layers, rope_scaling) or transformers' names (layer_types,
// compress_rates, partial_rotary_factor, mlp_layer_types, rope_parameters {main, compress}).
ModelConfig parse_v4(const json& j, const Fields& f, const std::string& source) {
  ModelConfig c;
  c.architecture = "DeepseekV4ForCausalLM";
  c.model_type = "deepseek_v4";
  // Keys of later variants (V4.1, vision, DSpark) change the architecture: refused, not ignored.
  for (auto it = j.begin(); it != j.end(); ++it)
    for (const char* prefix : {"kv_source_layer_ids", "engram_", "dspark_", "vision_config"})
      if (it.key().rfind(prefix, 0) == 0)
        fail(source, ": field '", it.key(), "' belongs to a DeepSeek-V4 variant whale does not run");
  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") fail(source, ": field 'hidden_act' is \"", act, "\"; only \"silu\" is supported");
  c.vocab_size = f.required_integer("vocab_size");
  c.hidden_size = f.required_integer("hidden_size");
  c.num_hidden_layers = f.required_integer("num_hidden_layers");
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.max_position_embeddings = f.integer("max_position_embeddings", 1048576);
  c.num_attention_heads = f.required_integer("num_attention_heads");
  if (f.integer("num_key_value_heads", 1) != 1) fail(source, ": field 'num_key_value_heads' must be 1 (shared-KV attention)");
  c.head_dim = f.integer("head_dim", 512);
  c.q_lora_rank = f.integer("q_lora_rank", 1024);
  if (f.has("qk_rope_head_dim")) c.qk_rope_head_dim = f.integer("qk_rope_head_dim", 64);
  else c.qk_rope_head_dim = int64_t(std::llround(double(c.head_dim) * f.number("partial_rotary_factor", 64.0 / 512.0)));
  c.o_groups = f.integer("o_groups", 8);
  c.o_lora_rank = f.integer("o_lora_rank", 1024);
  c.sliding_window = f.integer("sliding_window", 128);
  c.index_n_heads = f.integer("index_n_heads", 64);
  c.index_head_dim = f.integer("index_head_dim", 128);
  c.index_topk = f.integer("index_topk", 512);
  c.swiglu_limit = f.number("swiglu_limit", 10.0);
  c.hc_mult = f.integer("hc_mult", 4);
  c.hc_sinkhorn_iters = f.integer("hc_sinkhorn_iters", 20);
  c.hc_eps = f.number("hc_eps", 1e-6);
  c.num_nextn_predict_layers = f.integer("num_nextn_predict_layers", 0);

  // Layer schedule: always from the checkpoint (transformers' default parity is not V4-Pro's).
  if (f.has("compress_rates")) {
    const json& r = j.at("compress_rates");
    if (!r.is_object()) f.bad("compress_rates", "an object");
    Fields rf(r, source, "compress_rates.");
    c.compress_rate_csa = rf.integer("compressed_sparse_attention", 4);
    c.compress_rate_hca = rf.integer("heavily_compressed_attention", 128);
  }
  c.compress_rate_csa = f.integer("compress_rate_csa", c.compress_rate_csa);
  c.compress_rate_hca = f.integer("compress_rate_hca", c.compress_rate_hca);
  const int64_t L = c.num_hidden_layers;
  if (f.has("layer_types")) {
    const json& t = j.at("layer_types");
    if (!t.is_array() || int64_t(t.size()) < L) f.bad("layer_types", "a list with the attention type of every layer");
    for (size_t i = 0; i < t.size(); ++i)
      c.layer_attention.push_back(layer_attention_named(t[i].is_string() ? t[i].get<std::string>() : t[i].dump(), source, i));
  } else if (f.has("compress_ratios")) {  // released configs: 0 / 4 / 128 per layer, then the MTP block's
    const json& t = j.at("compress_ratios");
    if (!t.is_array() || int64_t(t.size()) < L) f.bad("compress_ratios", "a list with the ratio of every layer");
    for (size_t i = 0; i < t.size(); ++i) {
      const int64_t r = t[i].is_number_integer() ? t[i].get<int64_t>() : -1;
      if (r == 0) c.layer_attention.push_back(LayerAttention::Sliding);
      else if (r == c.compress_rate_csa) c.layer_attention.push_back(LayerAttention::CSA);
      else if (r == c.compress_rate_hca) c.layer_attention.push_back(LayerAttention::HCA);
      else fail(source, ": field 'compress_ratios[", i, "]' is ", t[i].dump(), "; expected 0, ", c.compress_rate_csa,
                " (CSA) or ", c.compress_rate_hca, " (HCA)");
    }
  } else {
    fail(source, ": a DeepSeek-V4 config needs 'layer_types' or 'compress_ratios' (the attention type of every layer)");
  }
  // The MTP block is sliding-only (its compress_ratios entry is 0) when the list does not say.
  while (int64_t(c.layer_attention.size()) < L + std::max<int64_t>(1, c.num_nextn_predict_layers))
    c.layer_attention.push_back(LayerAttention::Sliding);

  c.n_routed_experts = f.required_integer("n_routed_experts");
  c.n_shared_experts = f.integer("n_shared_experts", 1);
  c.num_experts_per_tok = f.required_integer("num_experts_per_tok");
  c.moe_intermediate_size = f.required_integer("moe_intermediate_size");
  c.intermediate_size = c.moe_intermediate_size;  // no dense layers
  c.first_k_dense_replace = 0;
  c.norm_topk_prob = f.boolean("norm_topk_prob", true);
  c.routed_scaling_factor = f.number("routed_scaling_factor", 1.5);
  c.topk_method = TopkMethod::NoauxTc;  // top-k of score + bias, no expert groups
  c.n_group = c.topk_group = 1;
  const std::string scoring = f.string("scoring_func", "sqrtsoftplus");
  if (scoring == "sqrtsoftplus") c.scoring_func = ScoringFunc::SqrtSoftplus;
  else if (scoring == "sigmoid") c.scoring_func = ScoringFunc::Sigmoid;
  else if (scoring == "softmax") c.scoring_func = ScoringFunc::Softmax;
  else fail(source, ": field 'scoring_func' is \"", scoring, "\"; expected sqrtsoftplus, sigmoid or softmax");
  if (f.has("mlp_layer_types")) {
    const json& t = j.at("mlp_layer_types");
    if (!t.is_array()) f.bad("mlp_layer_types", "a list of \"hash_moe\" / \"moe\"");
    int64_t hash = 0;
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string s = t[i].is_string() ? t[i].get<std::string>() : t[i].dump();
      if (s == "hash_moe" && hash == int64_t(i)) ++hash;
      else if (s != "moe")
        fail(source, ": field 'mlp_layer_types[", i, "]' is \"", s, "\"; whale runs hash_moe layers first, then moe");
    }
    c.num_hash_layers = hash;
  } else {
    c.num_hash_layers = f.integer("num_hash_layers", 3);
  }

  // RoPE: sliding layers rope_theta, no scaling; CSA/HCA layers compress_rope_theta with YaRN
  // (no attention factor: cos/sin unscaled), for all their rotations.
  c.rope_theta = f.number("rope_theta", 10000.0);
  c.compress_rope_theta = f.number("compress_rope_theta", 160000.0);
  const json* yarn = nullptr;
  if (f.has("rope_scaling")) yarn = &j.at("rope_scaling");
  if (f.has("rope_parameters")) {
    const json& rp = j.at("rope_parameters");
    if (!rp.is_object()) f.bad("rope_parameters", "an object");
    if (rp.contains("main") && rp["main"].is_object()) {
      Fields m(rp["main"], source, "rope_parameters.main.");
      c.rope_theta = m.number("rope_theta", c.rope_theta);
      if (m.string("rope_type", "default") != "default") fail(source, ": rope_parameters.main must be default RoPE");
    }
    if (rp.contains("compress") && rp["compress"].is_object()) {
      Fields m(rp["compress"], source, "rope_parameters.compress.");
      c.compress_rope_theta = m.number("rope_theta", c.compress_rope_theta);
      yarn = &rp["compress"];
    } else if (!rp.contains("main")) {
      yarn = &rp;
    }
  }
  if (yarn) {
    if (!yarn->is_object()) f.bad("rope_scaling", "an object");
    Fields r(*yarn, source, "rope_scaling.");
    const std::string type = r.string("type", r.string("rope_type", "default"));
    if (type == "yarn") {
      c.yarn = parse_yarn(*yarn, source, "rope_scaling.", c.max_position_embeddings);
      if (c.yarn.attention_factor < 0) c.yarn.attention_factor = 1.0;  // V4 does not scale cos/sin
    } else if (type != "default") {
      fail(source, ": rope_scaling type \"", type, "\" is not supported (expected yarn)");
    }
  }

  if (f.has("quantization_config")) {
    const json& q = j.at("quantization_config");
    if (!q.is_object()) f.bad("quantization_config", "an object");
    Fields qf(q, source, "quantization_config.");
    const std::string qm = qf.string("quant_method", "");
    if (qm != "fp8") fail(source, ": quantization_config.quant_method \"", qm, "\" is not supported (expected fp8)");
    c.fp8 = true;
    c.fp8_ue8m0 = qf.string("scale_fmt", "ue8m0") == "ue8m0";
    const std::string experts = qf.string("expert_dtype", f.string("expert_dtype", "fp8"));
    if (experts != "fp8" && experts != "fp4")
      fail(source, ": expert_dtype \"", experts, "\" is not supported (expected fp4 or fp8)");
  }
  c.bos_token_id = f.integer("bos_token_id", 0);
  if (f.has("eos_token_id")) {
    const json& e = j.at("eos_token_id");
    if (e.is_number_integer()) {
      c.eos_token_ids.push_back(e.get<int64_t>());
    } else if (e.is_array()) {
      for (const auto& v : e) {
        if (!v.is_number_integer()) f.bad("eos_token_id", "an integer or a list of integers");
        c.eos_token_ids.push_back(v.get<int64_t>());
      }
    } else {
      f.bad("eos_token_id", "an integer or a list of integers");
    }
  } else {
    c.eos_token_ids.push_back(1);
  }
  c.cache_numerics = CacheNumerics::Official;  // DeepSeek's FP8 / FP4 cache roundings (config.h)
  c.validate(source);
  return c;
}

}  // namespace

ModelConfig parse_hf_config(const std::string& json_text, const std::string& source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(source, ": not valid JSON");
  if (!j.is_object()) fail(source, ": not a JSON object");
  Fields f(j, source);
  ModelConfig c;
  {
    std::string arch = f.string("model_type", "");
    if (f.has("architectures") && j.at("architectures").is_array() && !j.at("architectures").empty() &&
        j.at("architectures")[0].is_string())
      arch = j.at("architectures")[0].get<std::string>();
    if (arch == "DeepseekV4ForCausalLM" || arch == "deepseek_v4") return parse_v4(j, f, source);
  }

  if (f.has("architectures")) {
    const json& a = j.at("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string()) f.bad("architectures", "a list of names");
    c.architecture = a[0].get<std::string>();
  }
  c.model_type = f.string("model_type", "");
  const bool v2 = c.architecture == "DeepseekV2ForCausalLM" || (c.architecture.empty() && c.model_type == "deepseek_v2");
  // DeepseekR2ForCausalLM is whale's R2 design: the V3 layer (MLA + DeepSeekMoE) with mHC
  // residual streams (hc_mult) and MTP modules; its other fields default like V3's.
  const bool r2 = c.architecture == "DeepseekR2ForCausalLM" || (c.architecture.empty() && c.model_type == "deepseek_r2");
  // DeepseekV32ForCausalLM is V3 (V3.1) plus DeepSeek Sparse Attention: a lightning indexer
  // in every layer, the MTP module's included.
  const bool v32 = c.architecture == "DeepseekV32ForCausalLM" || (c.architecture.empty() && c.model_type == "deepseek_v32");
  const bool v3 = r2 || v32 || c.architecture == "DeepseekV3ForCausalLM" ||
                  (c.architecture.empty() && c.model_type == "deepseek_v3");
  if (!v2 && !v3)
    fail(source, ": unsupported architecture '", c.architecture.empty() ? c.model_type : c.architecture,
         "' (whale runs DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, DeepseekV32ForCausalLM and DeepseekR2ForCausalLM)");
  if (c.architecture.empty())
    c.architecture = v2 ? "DeepseekV2ForCausalLM" : r2 ? "DeepseekR2ForCausalLM" : v32 ? "DeepseekV32ForCausalLM" : "DeepseekV3ForCausalLM";

  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") fail(source, ": field 'hidden_act' is \"", act, "\"; only \"silu\" is supported");

  c.vocab_size = f.required_integer("vocab_size");
  c.hidden_size = f.required_integer("hidden_size");
  c.num_hidden_layers = f.required_integer("num_hidden_layers");
  c.intermediate_size = f.required_integer("intermediate_size");
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.max_position_embeddings = f.integer("max_position_embeddings", v2 ? 2048 : 4096);

  c.num_attention_heads = f.required_integer("num_attention_heads");
  c.q_lora_rank = f.integer("q_lora_rank", 1536);  // HF default; null means no query compression
  if (j.contains("q_lora_rank") && j.at("q_lora_rank").is_null()) c.q_lora_rank = 0;
  c.kv_lora_rank = f.integer("kv_lora_rank", 512);
  c.qk_nope_head_dim = f.integer("qk_nope_head_dim", 128);
  c.qk_rope_head_dim = f.integer("qk_rope_head_dim", 64);
  c.v_head_dim = f.integer("v_head_dim", 128);
  if (f.has("num_key_value_heads") && f.integer("num_key_value_heads", 0) != c.num_attention_heads)
    fail(source, ": field 'num_key_value_heads' must equal num_attention_heads for MLA");

  c.n_routed_experts = f.integer("n_routed_experts", 0);
  c.n_shared_experts = f.integer("n_shared_experts", 0);
  c.num_experts_per_tok = f.integer("num_experts_per_tok", 0);
  c.moe_intermediate_size = f.integer("moe_intermediate_size", 0);
  c.n_group = f.integer("n_group", 1);
  c.topk_group = f.integer("topk_group", 1);
  c.norm_topk_prob = f.boolean("norm_topk_prob", v3);
  c.routed_scaling_factor = f.number("routed_scaling_factor", v3 ? 2.5 : 1.0);
  c.first_k_dense_replace = f.integer("first_k_dense_replace", v32 ? 3 : 0);
  if (v32 && f.has("mlp_layer_types")) {  // transformers 5: "dense" for the first layers, then "sparse"
    const json& t = j.at("mlp_layer_types");
    if (!t.is_array()) f.bad("mlp_layer_types", "a list of \"dense\" / \"sparse\"");
    int64_t dense = 0;
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string kind = t[i].is_string() ? t[i].get<std::string>() : "";
      if (kind == "dense" && dense == int64_t(i)) ++dense;
      else if (kind != "sparse")
        fail(source, ": field 'mlp_layer_types[", i, "]' is ", t[i].dump(),
             "; whale runs dense layers first, then sparse (MoE) ones");
    }
    c.first_k_dense_replace = dense;
  }
  c.moe_layer_freq = f.integer("moe_layer_freq", 1);

  const std::string scoring = f.string("scoring_func", v3 ? "sigmoid" : "softmax");
  if (scoring == "softmax") c.scoring_func = ScoringFunc::Softmax;
  else if (scoring == "sigmoid") c.scoring_func = ScoringFunc::Sigmoid;
  else fail(source, ": field 'scoring_func' is \"", scoring, "\"; expected softmax or sigmoid");
  const std::string method = f.string("topk_method", v3 ? "noaux_tc" : "greedy");
  if (method == "greedy") c.topk_method = TopkMethod::Greedy;
  else if (method == "group_limited_greedy") c.topk_method = TopkMethod::GroupLimitedGreedy;
  else if (method == "noaux_tc") c.topk_method = TopkMethod::NoauxTc;
  else fail(source, ": field 'topk_method' is \"", method, "\"; expected greedy, group_limited_greedy or noaux_tc");

  // RoPE: old-style rope_theta + rope_scaling, or transformers-5 style rope_parameters.
  const json* rope = nullptr;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!f.has(key)) continue;
    if (!j.at(key).is_object()) f.bad(key, "an object or null");
    rope = &j.at(key);
  }
  c.rope_theta = f.number("rope_theta", 10000.0);
  if (rope) {
    Fields r(*rope, source, "rope_scaling.");
    c.rope_theta = r.number("rope_theta", c.rope_theta);
    std::string type = r.string("type", r.string("rope_type", "default"));
    if (type == "yarn") {
      c.yarn = parse_yarn(*rope, source, "rope_scaling.", c.max_position_embeddings);
    } else if (type != "default") {
      fail(source, ": rope_scaling type \"", type, "\" is not supported (expected yarn)");
    }
  }

  if (f.has("quantization_config")) {
    const json& q = j.at("quantization_config");
    if (!q.is_object()) f.bad("quantization_config", "an object");
    Fields qf(q, source, "quantization_config.");
    const std::string qm = qf.string("quant_method", "");
    if (qm != "fp8") fail(source, ": quantization_config.quant_method \"", qm, "\" is not supported (expected fp8)");
    const std::string fmt = qf.string("fmt", "e4m3");
    if (fmt != "e4m3") fail(source, ": quantization_config.fmt \"", fmt, "\" is not supported (expected e4m3)");
    c.fp8 = true;
    if (qf.has("weight_block_size")) {
      const json& b = q.at("weight_block_size");
      if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() ||
          b[0].get<int64_t>() <= 0 || b[1].get<int64_t>() <= 0)
        qf.bad("weight_block_size", "[rows, cols] of positive integers");
      c.fp8_block_rows = b[0].get<int64_t>();
      c.fp8_block_cols = b[1].get<int64_t>();
    }
    c.fp8_ue8m0 = qf.string("scale_fmt", "") == "ue8m0";
  }

  c.bos_token_id = f.integer("bos_token_id", -1);
  if (f.has("eos_token_id")) {
    const json& e = j.at("eos_token_id");
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
    else if (e.is_array()) {
      for (const auto& v : e) {
        if (!v.is_number_integer()) f.bad("eos_token_id", "an integer or a list of integers");
        c.eos_token_ids.push_back(v.get<int64_t>());
      }
    } else {
      f.bad("eos_token_id", "an integer or a list of integers");
    }
  }
  c.num_nextn_predict_layers = f.integer("num_nextn_predict_layers", 0);
  if (f.has("hc_mult")) {
    if (!r2) fail(source, ": field 'hc_mult' (mHC) needs architecture DeepseekR2ForCausalLM");
    c.hc_mult = f.integer("hc_mult", 0);
    if (c.hc_mult < 1) fail(source, ": field 'hc_mult' = ", c.hc_mult, " must be at least 1");
  }
  if (v32) {
    c.index_n_heads = f.integer("index_n_heads", 64);
    c.index_head_dim = f.integer("index_head_dim", 128);
    c.index_topk = f.integer("index_topk", 2048);
    c.cache_numerics = CacheNumerics::Official;  // as DeepSeek's inference code: see config.h
    if (f.has("layer_types")) {
      const json& t = j.at("layer_types");
      if (!t.is_array()) f.bad("layer_types", "a list of layer types");
      for (size_t i = 0; i < t.size(); ++i)
        if (!t[i].is_string() || t[i].get<std::string>() != "indexed_attention")
          fail(source, ": field 'layer_types[", i, "]' is ", t[i].dump(), "; DeepSeek-V3.2 layers are \"indexed_attention\"");
    }
  } else if (f.has("index_n_heads") || f.has("index_topk")) {
    fail(source, ": fields 'index_n_heads' / 'index_topk' (DeepSeek Sparse Attention) need architecture DeepseekV32ForCausalLM");
  }
  c.hc_sinkhorn_iters = f.integer("hc_sinkhorn_iters", 20);
  c.hc_eps = f.number("hc_eps", 1e-6);

  c.validate(source);
  return c;
}

ModelConfig load_hf_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  if (!file_exists(path)) fail(model_dir, ": no config.json (expected a Hugging Face model directory)");
  return parse_hf_config(read_text_file(path), path);
}

}  // namespace whale
