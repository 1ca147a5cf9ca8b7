// Activations a training forward pass keeps for its backward pass. N = B·S tokens,
// n = residual streams (1 without mHC), D = hidden size; shapes next to every buffer.
#pragma once
#include <cstdint>
#include <vector>

namespace whale::train {

struct SiteActs {               // one mHC site (unused without mHC)
  std::vector<float> xn, inv;   // [N, n·D] rmsnorm(flatten(x)) without weight, [N]
  std::vector<float> mix;       // [N, rows]
  std::vector<float> pre, post, comb;  // [N, n], [N, n], [N, n, n]
};

struct FfnActs {                // a SwiGLU MLP over M rows
  std::vector<float> g, u, h;   // [M, I] gate, up, silu(g)·u
};

struct LayerActs {
  std::vector<float> x_in, x_mid;        // [N, n·D] streams entering the attention / FFN site
  SiteActs site_a, site_f;
  std::vector<float> y1, ln1, inv1;      // [N, D] sublayer input, normed; [N]
  std::vector<float> cq, cq_inv, cqn;    // [N, q_lora_rank], [N], [N, q_lora_rank]
  std::vector<float> q;                  // [N, H·qk], RoPE applied to each head's rope part
  std::vector<float> c_raw, c_inv, c;    // [N, kv_lora_rank], [N], [N, kv_lora_rank]
  std::vector<float> kpe;                // [N, rope] after RoPE (shared by all heads)
  std::vector<float> kv;                 // [N, H·(nope + dv)] = kv_b_proj c
  std::vector<float> P;                  // [B, H, S, S] attention probabilities
  std::vector<float> attn;               // [N, H·dv]
  std::vector<float> out_a;              // [N, D] attention output
  std::vector<float> y2, ln2, inv2;      // [N, D], [N, D], [N]
  FfnActs dense;                         // dense layer [N, I]
  std::vector<float> scores;             // MoE [N, E] sigmoid/softmax affinities
  std::vector<int32_t> idx;              // [N, K] chosen experts
  std::vector<float> w;                  // [N, K] their weights
  std::vector<std::vector<int64_t>> routed;  // per expert: entries t·K + k in token order
  std::vector<FfnActs> expert;           // per expert [n_e, I]
  std::vector<float> expert_out;         // [N·K, D] per entry
  FfnActs shared;                        // [N, I_shared]
  std::vector<float> out_f;              // [N, D] FFN output
};

struct HeadActs {                        // final collapse + norm + LM head rows
  SiteActs site;                         // hc_head (pre only)
  std::vector<float> hfin, inv, hidden;  // [N, D] collapsed, [N], normed
  std::vector<int64_t> rows;             // token indices with a target
  std::vector<int32_t> target;           // [R]
  std::vector<float> probs;              // [R, V] softmax
};

struct StackActs {
  int64_t B = 0, S = 0;
  std::vector<LayerActs> layers;
  std::vector<float> x_final;            // [N, n·D]
  HeadActs head;
};

}  // namespace whale::train
