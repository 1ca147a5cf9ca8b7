// The hyper-parameters that change the math of a DeepSeek model, with the names of the
// Hugging Face config.json (DeepseekV2ForCausalLM / DeepseekV3ForCausalLM).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace whale {

enum class ScoringFunc { Softmax, Sigmoid, SqrtSoftplus /* V4: sqrt(softplus(logit)) */ };

// What a layer attends with. MLA: DeepSeek-V2/V3's latent attention (V3.2 adds an indexer).
// DeepSeek-V4's shared-KV attention (one head_dim-wide key = value vector per token) over a
// sliding window of the last sliding_window tokens, plus, per layer type, compressed entries:
// CSA one per compress_rate_csa tokens (the indexer's top-k), HCA one per compress_rate_hca
// tokens (all of them).
enum class LayerAttention { MLA, Sliding, CSA, HCA };
enum class TopkMethod {
  Greedy,              // plain top-k over all experts (V2-Lite)
  GroupLimitedGreedy,  // keep topk_group groups by their max score, then top-k (V2)
  NoauxTc,             // groups ranked by the sum of their top-2 biased scores, then top-k (V3)
};

// YaRN context extension (rope_scaling type "yarn"), with Hugging Face's semantics:
// frequencies are blended between original and /factor by a ramp over the rotary pairs,
// cos/sin are multiplied by attention_factor, and the softmax scale by mscale(mscale_all_dim)^2.
struct YarnConfig {
  bool enabled = false;
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 0.0, mscale_all_dim = 0.0;  // 0 = absent
  double attention_factor = -1.0;             // < 0 = derived from factor and mscales
  bool truncate = true;
};

// What a model's attention caches hold for the values DeepSeek's official inference code
// quantizes in the graph (quantization-aware training: the model learned with these roundings).
// Official: DeepSeek-V3.2's indexer keys and queries are Hadamard-rotated and stored as FP8
// e4m3 with a power-of-two scale per 128 values, and its MLA latent c_kv is rounded the same
// way; Float: float32 throughout, as Hugging Face transformers computes.
enum class CacheNumerics { Float, Official };

struct ModelConfig {
  std::string architecture;  // e.g. "DeepseekV3ForCausalLM"
  std::string model_type;    // e.g. "deepseek_v3"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t intermediate_size = 0;  // dense SwiGLU layers
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 0;

  // Multi-head Latent Attention
  int64_t num_attention_heads = 0;
  int64_t q_lora_rank = 0;  // 0: no query compression (q_proj), as in V2-Lite
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  double rope_theta = 10000.0;
  YarnConfig yarn;

  // DeepSeekMoE
  int64_t n_routed_experts = 0;  // 0: every layer dense
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  TopkMethod topk_method = TopkMethod::Greedy;
  ScoringFunc scoring_func = ScoringFunc::Softmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;

  // FP8 weights (quantization_config.quant_method == "fp8")
  bool fp8 = false;
  int64_t fp8_block_rows = 128, fp8_block_cols = 128;
  bool fp8_ue8m0 = false;  // scale_fmt "ue8m0": power-of-two scales (V3.1)

  // DeepSeek-V4 (shared-KV attention; see LayerAttention). Empty layer_attention: MLA everywhere.
  std::vector<LayerAttention> layer_attention;  // per layer (+ the MTP module's)
  int64_t head_dim = 0;                         // key = value width (512); qk_rope_head_dim of it rotated
  int64_t sliding_window = 0;
  int64_t o_groups = 0, o_lora_rank = 0;        // grouped low-rank output projection
  int64_t compress_rate_csa = 4, compress_rate_hca = 128;
  double compress_rope_theta = 160000.0;        // RoPE of CSA/HCA layers (with `yarn`); sliding layers: rope_theta
  double swiglu_limit = 0;                      // SwiGLU clamp (0: none): gate <= limit, |up| <= limit
  int64_t num_hash_layers = 0;                  // first layers route by token id (tid2eid)

  // DeepSeek Sparse Attention (V3.2): a lightning indexer in every layer scores the cached
  // tokens (index_n_heads heads of index_head_dim) and attention keeps the index_topk best.
  int64_t index_n_heads = 0;  // 0: dense attention
  int64_t index_head_dim = 0;
  int64_t index_topk = 0;
  CacheNumerics cache_numerics = CacheNumerics::Float;

  // Manifold-Constrained Hyper-Connections (DeepSeek-V4's recipe); hc_mult 0 = plain residual.
  int64_t hc_mult = 0;
  int64_t hc_sinkhorn_iters = 20;
  double hc_eps = 1e-6;

  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  int64_t num_nextn_predict_layers = 0;  // multi-token prediction modules after the last layer

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t kv_cache_dim() const { return kv_lora_rank + qk_rope_head_dim; }  // latent values per token per layer
  bool hyper_connections() const { return hc_mult > 0; }
  bool sparse_attention() const { return index_n_heads > 0 && !shared_kv(); }  // V3.2's indexer
  bool shared_kv() const { return !layer_attention.empty(); }                   // DeepSeek-V4
  LayerAttention attention_of(int64_t layer) const {
    return shared_kv() ? layer_attention[size_t(layer)] : LayerAttention::MLA;
  }
  int64_t compress_rate(LayerAttention a) const {
    return a == LayerAttention::CSA ? compress_rate_csa : a == LayerAttention::HCA ? compress_rate_hca : 0;
  }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  // Checks internal consistency; throws whale::Error naming `source` and the field.
  void validate(const std::string& source) const;
};

const char* to_string(ScoringFunc f);
const char* to_string(TopkMethod m);
const char* to_string(CacheNumerics n);
const char* to_string(LayerAttention a);
// "float" or "official"; throws naming the accepted values otherwise.
CacheNumerics parse_cache_numerics(const std::string& name);

}  // namespace whale
