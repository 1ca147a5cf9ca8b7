// Activation buffers of one forward step (private to the model's .cpp files).
// Shapes in comments: T = tokens in the batch.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/model.h"

namespace whale {

// MoE runs its routed experts in groups of at most this many (token, expert) entries, each group
// as two batches of products (gate and up, then down): all of a decode step's experts at once,
// while a long prompt's buffers stay at about its own length.
inline int64_t moe_group_entries(const ModelConfig& c, int64_t T) {
  return std::max(T, std::min<int64_t>(T * c.num_experts_per_tok, 256));
}

struct Model::Workspace {
  std::vector<float> h;       // [T, hidden] residual stream; [T, hc_mult, hidden] with mHC
  std::vector<float> y;       // [T, hidden] mHC: the collapsed sublayer input
  std::vector<float> hc_post, hc_comb;  // [T, hc_mult], [T, hc_mult, hc_mult] of the current site
  std::vector<float> xn;      // [T, hidden] normalised input of the current sublayer
  std::vector<float> out;     // [T, hidden] sublayer output
  std::vector<float> cq;      // [T, q_lora_rank]
  std::vector<float> q;       // [T, H, qk_head_dim]   q_nope first, then q_pe
  std::vector<float> kva;     // [T, kv_lora_rank + qk_rope_head_dim]   c_kv, then k_pe
  std::vector<float> attn;    // [T, H, v_head_dim]
  std::vector<float> iq, ik, iw;  // lightning indexer: [T, index_n_heads, index_head_dim], [T, index_head_dim], [T, index_n_heads]
  std::vector<float> ccos, csin;  // V4: [T, qk_rope_head_dim / 2] angles of the compress RoPE
  std::vector<float> z;           // V4: [T, o_groups · o_lora_rank] grouped output
  std::vector<float> cos, sin;  // [T, qk_rope_head_dim / 2]
  std::vector<float> gate, up;  // [T, intermediate] SwiGLU halves
  std::vector<float> router_logits;  // [T, n_routed_experts]
  std::vector<int32_t> topk_idx;     // [T, top_k]
  std::vector<float> topk_weight;    // [T, top_k]
  std::vector<float> expert_in, expert_out;    // [moe_group_entries(T), hidden] a group of experts' tokens
  std::vector<float> expert_gate, expert_up;   // [moe_group_entries(T), moe_intermediate]
  std::vector<float> shared_out;               // [T, hidden] the shared experts' output

  void resize(const ModelConfig& c, int64_t T) {
    const int64_t D = c.hidden_size, H = c.num_attention_heads, n = std::max<int64_t>(1, c.hc_mult);
    h.resize(size_t(T * n * D));
    y.resize(size_t(T * D));
    hc_post.resize(size_t(T * n));
    hc_comb.resize(size_t(T * n * n));
    xn.resize(size_t(T * D));
    out.resize(size_t(T * D));
    cq.resize(size_t(T * c.q_lora_rank));
    q.resize(size_t(T * H * std::max(c.qk_head_dim(), c.head_dim)));
    kva.resize(size_t(T * std::max(c.kv_cache_dim(), c.head_dim)));
    attn.resize(size_t(T * H * std::max(c.v_head_dim, c.head_dim)));
    if (c.shared_kv()) {
      ccos.resize(size_t(T * c.qk_rope_head_dim / 2));
      csin.resize(size_t(T * c.qk_rope_head_dim / 2));
      z.resize(size_t(T * c.o_groups * c.o_lora_rank));
    }
    iq.resize(size_t(T * c.index_n_heads * c.index_head_dim));
    ik.resize(size_t(T * c.index_head_dim));
    iw.resize(size_t(T * c.index_n_heads));
    cos.resize(size_t(T * c.qk_rope_head_dim / 2));
    sin.resize(size_t(T * c.qk_rope_head_dim / 2));
    const int64_t inter = std::max(c.intermediate_size, c.moe_intermediate_size * std::max<int64_t>(1, c.n_shared_experts));
    gate.resize(size_t(T * inter));
    up.resize(size_t(T * inter));
    router_logits.resize(size_t(T * c.n_routed_experts));
    topk_idx.resize(size_t(T * c.num_experts_per_tok));
    topk_weight.resize(size_t(T * c.num_experts_per_tok));
    const int64_t entries = moe_group_entries(c, T);
    expert_in.resize(size_t(entries * D));
    expert_out.resize(size_t(entries * D));
    expert_gate.resize(size_t(entries * c.moe_intermediate_size));
    expert_up.resize(size_t(entries * c.moe_intermediate_size));
    shared_out.resize(size_t(T * D));
  }
};

}  // namespace whale
