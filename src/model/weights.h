// The weights of a DeepSeek model, bound by name from a TensorSet and checked against the
// config: every tensor must exist with the expected shape and a supported dtype.
// Shapes follow PyTorch: a linear weight is [out, in].
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "formats/safetensors.h"
#include "kernels/weight.h"
#include "model/config.h"

namespace whale {

struct MLPWeights {            // SwiGLU: down( silu(gate x) ⊙ up x )
  Weight gate_proj;            // [inter, hidden]
  Weight up_proj;              // [inter, hidden]
  Weight down_proj;            // [hidden, inter]
};

struct IndexerWeights {        // DeepSeek Sparse Attention's lightning indexer (V3.2)
  Weight wq_b;                 // [index_n_heads·index_head_dim, q_lora_rank]   from MLA's q latent
  Weight wk;                   // [index_head_dim, hidden]                      one key per token
  std::vector<float> k_norm_weight, k_norm_bias;  // [index_head_dim] LayerNorm with bias
  Weight weights_proj;         // [index_n_heads, hidden]                       per-head score weights
  bool empty() const { return wq_b.empty(); }
};

// DeepSeek-V4's compressor: per token kv = wkv x and gate = wgate x + ape[pos % m]; a window
// of m tokens (CSA: two overlapping halves, 2m) becomes one entry: Σ softmax(gate) ⊙ kv per
// channel, then `norm`. coff = 2 for CSA (the previous window's half and the current one's).
struct CompressorWeights {
  Weight wkv, wgate;            // [coff·d, hidden]
  std::vector<float> ape;       // [m, coff·d]
  std::vector<float> norm;      // [d]
  bool empty() const { return wkv.empty(); }
};

// DeepSeek-V4's shared-KV attention (released names layers.N.attn.*), beside the query path
// it shares with MLA (q_a_proj = wq_a, q_a_layernorm = q_norm, q_b_proj = wq_b).
struct SharedKVWeights {
  Weight wkv;                     // [head_dim, hidden]   the one key = value vector
  std::vector<float> kv_norm;     // [head_dim]
  Weight wo_a;                    // [o_groups·o_lora_rank, H·head_dim / o_groups]   per group
  Weight wo_b;                    // [hidden, o_groups·o_lora_rank]
  std::vector<float> attn_sink;   // [H] a logit per head with a zero value
  CompressorWeights compressor;   // CSA and HCA layers
  Weight index_wq_b;              // [index_n_heads·index_head_dim, q_lora_rank]   CSA only
  Weight index_weights_proj;      // [index_n_heads, hidden]
  CompressorWeights index_compressor;  // d = index_head_dim
};

struct AttentionWeights {      // Multi-head Latent Attention
  Weight q_proj;               // [H·qk_head_dim, hidden]            (only without q LoRA)
  Weight q_a_proj;             // [q_lora_rank, hidden]              (only with q LoRA)
  std::vector<float> q_a_layernorm;  // [q_lora_rank]
  Weight q_b_proj;             // [H·qk_head_dim, q_lora_rank]
  Weight kv_a_proj_with_mqa;   // [kv_lora_rank + qk_rope_head_dim, hidden]
  std::vector<float> kv_a_layernorm;  // [kv_lora_rank]
  Weight kv_b_proj;            // [H·(qk_nope_head_dim + v_head_dim), kv_lora_rank]
  // GGUF files split kv_b_proj for the absorbed form (then kv_b_proj is empty):
  Weight k_b_proj;             // [H·kv_lora_rank, qk_nope_head_dim]  per head W_UKᵀ
  Weight v_b_proj;             // [H·v_head_dim, kv_lora_rank]        per head W_UV
  Weight o_proj;               // [hidden, H·v_head_dim]
  IndexerWeights indexer;      // V3.2 only
  SharedKVWeights v4;          // DeepSeek-V4 only
};

struct MoEWeights {
  Weight gate;                                  // router [n_routed_experts, hidden]
  std::vector<float> e_score_correction_bias;   // [n_routed_experts]; empty if absent
  std::vector<MLPWeights> experts;              // n_routed_experts × [moe_inter, hidden] ...
  MLPWeights shared_experts;                    // [n_shared·moe_inter, hidden]; empty if none
  std::vector<int32_t> tid2eid;                 // V4 hash layers: [vocab, top_k] experts by token id
};

// One mHC site (DeepSeek-V4 names: hc_attn_* / hc_ffn_*), n = hc_mult.
struct HyperConnectionWeights {
  Weight fn;                    // [(2+n)·n, n·hidden]   pre | post | comb rows
  std::vector<float> base;      // [(2+n)·n]
  std::vector<float> scale;     // [3]
  bool empty() const { return fn.empty(); }
};

// The final collapse of the n streams (hc_head_*).
struct HyperHeadWeights {
  Weight fn;                    // [n, n·hidden]
  std::vector<float> base;      // [n]
  float scale = 1.0f;           // hc_head_scale [1]
  bool empty() const { return fn.empty(); }
};

struct LayerWeights {
  std::vector<float> input_layernorm;           // [hidden]
  std::vector<float> post_attention_layernorm;  // [hidden]
  AttentionWeights attn;
  bool is_moe = false;
  MLPWeights mlp;                               // dense layers
  MoEWeights moe;                               // MoE layers
  HyperConnectionWeights hc_attn, hc_ffn;       // mHC models only
};

// A multi-token-prediction module (DeepSeek-V3 layout: layer index num_hidden_layers + k).
// From the main model's final hidden state h_i and the embedding of token i+1 it predicts
// token i+2:  z = eh_proj([enorm(emb); hnorm(h)]) -> decoder block -> shared_head.
//
// DeepSeek-V4's module (mtp.k.*) reads the main model's hc_mult residual streams instead:
// z_i = e_proj(enorm(emb)) + h_proj(hnorm(X_i)) per stream, then a block and its own hc_head.
struct MtpWeights {
  std::vector<float> enorm, hnorm;              // [hidden]
  Weight eh_proj;                               // [hidden, 2·hidden], embedding half first
  Weight e_proj, h_proj;                        // V4: [hidden, hidden] each
  LayerWeights block;
  HyperHeadWeights hc_head;                     // mHC models only
  std::vector<float> shared_head_norm;          // [hidden]
  Weight embed_tokens, head;                    // the module's copies, or the main model's
};

struct ModelWeights {
  Weight embed_tokens;          // [vocab, hidden]
  std::vector<LayerWeights> layers;
  HyperHeadWeights hc_head;     // mHC models only
  std::vector<float> norm;      // [hidden]
  Weight lm_head;               // [vocab, hidden] (the embedding when tied)
  std::vector<MtpWeights> mtp;  // empty when the checkpoint has no MTP modules
  OwnedBuffers owned;           // converted or realigned tensors
  size_t weight_bytes = 0;      // bytes of all bound matrices
};

// Binds the standard Hugging Face names (model.layers.N.self_attn.q_a_proj.weight, ...), or
// for DeepSeek-V4 the released names (embed.weight, layers.N.attn.wq_a.weight, ...).
std::unique_ptr<ModelWeights> bind_hf_weights(const TensorSet& tensors, const ModelConfig& config);

}  // namespace whale
