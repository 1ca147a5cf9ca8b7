#include "model/config.h"

#include "core/error.h"

namespace whale {

void ModelConfig::validate(const std::string& source) const {
  auto in_range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) fail(source, ": field '", name, "' = ", v, " is out of range [", lo, ", ", hi, "]");
  };
  // Upper bounds are far above any real model; they stop a lying config from asking for
  // absurd allocations before the tensor shapes are even checked.
  in_range("vocab_size", vocab_size, 1, int64_t(1) << 24);
  in_range("hidden_size", hidden_size, 1, 1 << 17);
  in_range("num_hidden_layers", num_hidden_layers, 1, 4096);
  in_range("intermediate_size", intermediate_size, 1, 1 << 20);
  in_range("num_attention_heads", num_attention_heads, 1, 4096);
  in_range("q_lora_rank", q_lora_rank, 0, 1 << 17);
  in_range("qk_rope_head_dim", qk_rope_head_dim, 2, 1 << 14);
  if (shared_kv()) {  // DeepSeek-V4
    in_range("q_lora_rank", q_lora_rank, 1, 1 << 17);
    in_range("head_dim", head_dim, qk_rope_head_dim, 1 << 14);
    in_range("sliding_window", sliding_window, 1, int64_t(1) << 24);
    in_range("o_groups", o_groups, 1, num_attention_heads);
    in_range("o_lora_rank", o_lora_rank, 1, 1 << 17);
    in_range("compress_rates.compressed_sparse_attention", compress_rate_csa, 1, 1 << 16);
    in_range("compress_rates.heavily_compressed_attention", compress_rate_hca, 1, 1 << 16);
    in_range("index_n_heads", index_n_heads, 1, 1024);
    in_range("index_head_dim", index_head_dim, qk_rope_head_dim, 1 << 12);
    in_range("index_topk", index_topk, 1, int64_t(1) << 31);
    in_range("num_hash_layers", num_hash_layers, 0, num_hidden_layers);
    if (num_attention_heads % o_groups)
      fail(source, ": num_attention_heads (", num_attention_heads, ") is not divisible by o_groups (", o_groups, ")");
    if (index_head_dim & (index_head_dim - 1))
      fail(source, ": field 'index_head_dim' = ", index_head_dim, " must be a power of two (Hadamard rotation)");
    if (hc_mult < 1) fail(source, ": DeepSeek-V4 needs mHC (hc_mult >= 1)");
    if (!(swiglu_limit >= 0)) fail(source, ": field 'swiglu_limit' must not be negative");
  } else {
    in_range("kv_lora_rank", kv_lora_rank, 1, 1 << 16);
    in_range("qk_nope_head_dim", qk_nope_head_dim, 0, 1 << 14);
    in_range("v_head_dim", v_head_dim, 1, 1 << 14);
  }
  in_range("max_position_embeddings", max_position_embeddings, 1, int64_t(1) << 31);
  if (qk_rope_head_dim % 2) fail(source, ": field 'qk_rope_head_dim' = ", qk_rope_head_dim, " must be even");
  if (!(rms_norm_eps > 0)) fail(source, ": field 'rms_norm_eps' must be positive");
  if (!(rope_theta > 1)) fail(source, ": field 'rope_theta' must be greater than 1");

  if (n_routed_experts > 0) {
    in_range("n_routed_experts", n_routed_experts, 1, 1 << 16);
    in_range("num_experts_per_tok", num_experts_per_tok, 1, n_routed_experts);
    in_range("moe_intermediate_size", moe_intermediate_size, 1, 1 << 20);
    in_range("n_shared_experts", n_shared_experts, 0, 1024);
    in_range("n_group", n_group, 1, n_routed_experts);
    in_range("topk_group", topk_group, 1, n_group);
    in_range("first_k_dense_replace", first_k_dense_replace, 0, num_hidden_layers);
    in_range("moe_layer_freq", moe_layer_freq, 1, num_hidden_layers);
    if (n_routed_experts % n_group)
      fail(source, ": n_routed_experts (", n_routed_experts, ") is not divisible by n_group (", n_group, ")");
    const int64_t per_group = n_routed_experts / n_group;
    if (topk_method == TopkMethod::NoauxTc && n_group > 1 && per_group < 2)
      fail(source, ": noaux_tc ranks groups by their top-2 experts, so each group needs at least 2 experts");
    if (topk_method != TopkMethod::Greedy && topk_group * per_group < num_experts_per_tok)
      fail(source, ": topk_group (", topk_group, ") groups of ", per_group,
           " experts cannot supply num_experts_per_tok (", num_experts_per_tok, ") experts");
    if (!(routed_scaling_factor > 0)) fail(source, ": field 'routed_scaling_factor' must be positive");
  }
  if (yarn.enabled) {
    if (!(yarn.factor > 0)) fail(source, ": rope_scaling.factor must be positive");
    in_range("rope_scaling.original_max_position_embeddings", yarn.original_max_position_embeddings, 1,
             int64_t(1) << 31);
  }
  if (hc_mult != 0) {
    in_range("hc_mult", hc_mult, 1, 64);
    in_range("hc_sinkhorn_iters", hc_sinkhorn_iters, 1, 1000);
    if (!(hc_eps > 0)) fail(source, ": field 'hc_eps' must be positive");
  }
  if (index_n_heads != 0 && !shared_kv()) {
    in_range("index_n_heads", index_n_heads, 1, 1024);
    in_range("index_head_dim", index_head_dim, qk_rope_head_dim, 1 << 12);
    in_range("index_topk", index_topk, 1, int64_t(1) << 31);
    if (index_head_dim & (index_head_dim - 1))
      fail(source, ": field 'index_head_dim' = ", index_head_dim, " must be a power of two (Hadamard rotation)");
    if (q_lora_rank == 0) fail(source, ": the lightning indexer (index_n_heads) needs q_lora_rank");
  }
  in_range("num_nextn_predict_layers", num_nextn_predict_layers, 0, 16);
  if (!shared_kv() && hidden_size % num_attention_heads)
    fail(source, ": hidden_size (", hidden_size, ") is not divisible by num_attention_heads (", num_attention_heads, ")");
  for (int64_t e : eos_token_ids) in_range("eos_token_id", e, 0, vocab_size - 1);
  if (fp8) {
    in_range("quantization_config.weight_block_size[0]", fp8_block_rows, 1, 1 << 16);
    in_range("quantization_config.weight_block_size[1]", fp8_block_cols, 1, 1 << 16);
  }
}

}  // namespace whale
