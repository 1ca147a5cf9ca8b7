#include "model/param_specs.h"

namespace whale {

namespace {
// DeepSeek-V4, released names (weights.cpp's v4_layer reads the same).
std::vector<ParamSpec> v4_param_specs(const ModelConfig& c) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, hd = c.head_dim, ql = c.q_lora_rank, n = c.hc_mult;
  const int64_t ih = c.index_n_heads, ihd = c.index_head_dim, E = c.n_routed_experts, I = c.moe_intermediate_size;
  std::vector<ParamSpec> out;
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamRole role) {
    out.push_back({std::move(name), std::move(shape), role});
  };
  auto mlp = [&](const std::string& p, int64_t inter) {
    add(p + ".w1.weight", {inter, D}, ParamRole::Linear);
    add(p + ".w3.weight", {inter, D}, ParamRole::Linear);
    add(p + ".w2.weight", {D, inter}, ParamRole::Linear);
  };
  auto compressor = [&](const std::string& p, int64_t m, int64_t coff, int64_t d) {
    add(p + ".wkv.weight", {coff * d, D}, ParamRole::Router);  // BF16 in the released files
    add(p + ".wgate.weight", {coff * d, D}, ParamRole::Router);
    add(p + ".ape", {m, coff * d}, ParamRole::Hyper);
    add(p + ".norm.weight", {d}, ParamRole::Norm);
  };
  auto block = [&](const std::string& p, LayerAttention type, bool hash) {
    add(p + ".attn_norm.weight", {D}, ParamRole::Norm);
    add(p + ".ffn_norm.weight", {D}, ParamRole::Norm);
    for (const char* site : {".hc_attn", ".hc_ffn"}) {
      add(p + site + "_fn", {(2 + n) * n, n * D}, ParamRole::Hyper);
      add(p + site + "_base", {(2 + n) * n}, ParamRole::HyperBase);
      add(p + site + "_scale", {3}, ParamRole::HyperScale);
    }
    const std::string a = p + ".attn";
    add(a + ".wq_a.weight", {ql, D}, ParamRole::Linear);
    add(a + ".q_norm.weight", {ql}, ParamRole::Norm);
    add(a + ".wq_b.weight", {H * hd, ql}, ParamRole::Linear);
    add(a + ".wkv.weight", {hd, D}, ParamRole::Linear);
    add(a + ".kv_norm.weight", {hd}, ParamRole::Norm);
    add(a + ".wo_a.weight", {c.o_groups * c.o_lora_rank, H * hd / c.o_groups}, ParamRole::Linear);
    add(a + ".wo_b.weight", {D, c.o_groups * c.o_lora_rank}, ParamRole::Linear);
    add(a + ".attn_sink", {H}, ParamRole::Bias);
    if (const int64_t m = c.compress_rate(type); m > 0) {
      compressor(a + ".compressor", m, type == LayerAttention::CSA ? 2 : 1, hd);
      if (type == LayerAttention::CSA) {
        add(a + ".indexer.wq_b.weight", {ih * ihd, ql}, ParamRole::Linear);
        add(a + ".indexer.weights_proj.weight", {ih, D}, ParamRole::Router);
        compressor(a + ".indexer.compressor", m, 2, ihd);
      }
    }
    const std::string f = p + ".ffn";
    add(f + ".gate.weight", {E, D}, ParamRole::Router);
    if (hash) add(f + ".gate.tid2eid", {c.vocab_size, c.num_experts_per_tok}, ParamRole::TokenTable);
    else add(f + ".gate.bias", {E}, ParamRole::Bias);
    for (int64_t e = 0; e < E; ++e) mlp(f + ".experts." + std::to_string(e), I);
    if (c.n_shared_experts > 0) mlp(f + ".shared_experts", I * c.n_shared_experts);
  };
  auto hyper_head = [&](const std::string& p) {
    add(p + "hc_head_fn", {n, n * D}, ParamRole::Hyper);
    add(p + "hc_head_base", {n}, ParamRole::HyperBase);
    add(p + "hc_head_scale", {1}, ParamRole::HyperScale);
  };
  add("embed.weight", {c.vocab_size, D}, ParamRole::Embedding);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    block("layers." + std::to_string(l), c.attention_of(l), l < c.num_hash_layers);
  hyper_head("");
  add("norm.weight", {D}, ParamRole::Norm);
  add("head.weight", {c.vocab_size, D}, ParamRole::Embedding);
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {  // mtp.k: its projections, a sliding block, its head
    const std::string p = "mtp." + std::to_string(k);
    add(p + ".e_proj.weight", {D, D}, ParamRole::Linear);
    add(p + ".h_proj.weight", {D, D}, ParamRole::Linear);
    add(p + ".enorm.weight", {D}, ParamRole::Norm);
    add(p + ".hnorm.weight", {D}, ParamRole::Norm);
    add(p + ".norm.weight", {D}, ParamRole::Norm);
    block(p, c.attention_of(c.num_hidden_layers + k), false);
    hyper_head(p + ".");
  }
  return out;
}
}  // namespace

std::vector<ParamSpec> hf_param_specs(const ModelConfig& c) {
  if (c.shared_kv()) return v4_param_specs(c);
  const int64_t D = c.hidden_size, H = c.num_attention_heads;
  std::vector<ParamSpec> out;
  auto add = [&](std::string name, std::vector<int64_t> shape, ParamRole role) {
    out.push_back({std::move(name), std::move(shape), role});
  };
  auto mlp = [&](const std::string& p, int64_t inter) {
    add(p + ".gate_proj.weight", {inter, D}, ParamRole::Linear);
    add(p + ".up_proj.weight", {inter, D}, ParamRole::Linear);
    add(p + ".down_proj.weight", {D, inter}, ParamRole::Linear);
  };

  const int64_t n = c.hc_mult;
  auto hyper = [&](const std::string& p) {
    add(p + "_fn", {(2 + n) * n, n * D}, ParamRole::Hyper);
    add(p + "_base", {(2 + n) * n}, ParamRole::HyperBase);
    add(p + "_scale", {3}, ParamRole::HyperScale);
  };
  auto hyper_head = [&](const std::string& p) {
    add(p + "_fn", {n, n * D}, ParamRole::Hyper);
    add(p + "_base", {n}, ParamRole::HyperBase);
    add(p + "_scale", {1}, ParamRole::HyperScale);
  };
  auto layer = [&](int64_t l) {
    const std::string p = "model.layers." + std::to_string(l);
    add(p + ".input_layernorm.weight", {D}, ParamRole::Norm);
    add(p + ".post_attention_layernorm.weight", {D}, ParamRole::Norm);
    const std::string a = p + ".self_attn";
    if (c.q_lora_rank > 0) {
      add(a + ".q_a_proj.weight", {c.q_lora_rank, D}, ParamRole::Linear);
      add(a + ".q_a_layernorm.weight", {c.q_lora_rank}, ParamRole::Norm);
      add(a + ".q_b_proj.weight", {H * c.qk_head_dim(), c.q_lora_rank}, ParamRole::Linear);
    } else {
      add(a + ".q_proj.weight", {H * c.qk_head_dim(), D}, ParamRole::Linear);
    }
    add(a + ".kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, D}, ParamRole::Linear);
    add(a + ".kv_a_layernorm.weight", {c.kv_lora_rank}, ParamRole::Norm);
    add(a + ".kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, ParamRole::Linear);
    add(a + ".o_proj.weight", {D, H * c.v_head_dim}, ParamRole::Linear);
    if (c.sparse_attention()) {  // V3.2's lightning indexer: weights_proj stays BF16 like a router
      add(a + ".indexer.wq_b.weight", {c.index_n_heads * c.index_head_dim, c.q_lora_rank}, ParamRole::Linear);
      add(a + ".indexer.wk.weight", {c.index_head_dim, D}, ParamRole::Linear);
      add(a + ".indexer.k_norm.weight", {c.index_head_dim}, ParamRole::Norm);
      add(a + ".indexer.k_norm.bias", {c.index_head_dim}, ParamRole::Bias);
      add(a + ".indexer.weights_proj.weight", {c.index_n_heads, D}, ParamRole::Router);
    }
    if (c.hyper_connections()) {
      hyper(p + ".hc_attn");
      hyper(p + ".hc_ffn");
    }
    if (!c.is_moe_layer(l)) {
      mlp(p + ".mlp", c.intermediate_size);
      return;
    }
    add(p + ".mlp.gate.weight", {c.n_routed_experts, D}, ParamRole::Router);
    if (c.topk_method == TopkMethod::NoauxTc) add(p + ".mlp.gate.e_score_correction_bias", {c.n_routed_experts}, ParamRole::Bias);
    for (int64_t e = 0; e < c.n_routed_experts; ++e) mlp(p + ".mlp.experts." + std::to_string(e), c.moe_intermediate_size);
    if (c.n_shared_experts > 0) mlp(p + ".mlp.shared_experts", c.moe_intermediate_size * c.n_shared_experts);
  };

  add("model.embed_tokens.weight", {c.vocab_size, D}, ParamRole::Embedding);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) layer(l);
  if (c.hyper_connections()) hyper_head("model.hc_head");
  add("model.norm.weight", {D}, ParamRole::Norm);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, D}, ParamRole::Embedding);
  // MTP modules share the main embedding and LM head (no copies are written).
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const int64_t index = c.num_hidden_layers + k;
    const std::string p = "model.layers." + std::to_string(index);
    add(p + ".enorm.weight", {D}, ParamRole::Norm);
    add(p + ".hnorm.weight", {D}, ParamRole::Norm);
    add(p + ".eh_proj.weight", {D, 2 * D}, ParamRole::Linear);
    layer(index);
    if (c.hyper_connections()) hyper_head(p + ".hc_head");
    add(p + ".shared_head.norm.weight", {D}, ParamRole::Norm);
  }
  return out;
}

}  // namespace whale
