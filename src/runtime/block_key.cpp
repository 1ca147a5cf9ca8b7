#include "runtime/block_key.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/durable.h"
#include "kernels/gemm_simd.h"

namespace whale {

BlockKey cache_root(const Digest& model_identity, const std::vector<CacheGroupSpec>& groups, int64_t block_tokens) {
  Sha256 h;
  h.update("whale kv cache root").update_u64(kCacheFormatVersion);
  h.update(model_identity.bytes.data(), 32);
  h.update(simd_target_name()).update("|");
  h.update_u64(uint64_t(block_tokens)).update_u64(groups.size());
  for (const CacheGroupSpec& g : groups) {
    h.update(g.kind).update_u64(g.kind.size());
    h.update_u64(uint64_t(g.n_layers)).update_u64(uint64_t(g.dim)).update("f32");
    if (g.stride != 1) h.update("stride").update_u64(uint64_t(g.stride));
    if (g.window != 0) h.update("window").update_u64(uint64_t(g.window));  // such blocks carry a window flag
  }
  return h.finish();
}

BlockKey chain_key(const BlockKey& parent, std::span<const int32_t> tokens) {
  Sha256 h;
  h.update(parent.bytes.data(), 32);
  for (int32_t t : tokens) {
    const uint32_t u = uint32_t(t);
    const uint8_t b[4] = {uint8_t(u), uint8_t(u >> 8), uint8_t(u >> 16), uint8_t(u >> 24)};
    h.update(b, 4);
  }
  return h.finish();
}

std::vector<BlockKey> block_keys(const BlockKey& root, std::span<const int32_t> tokens, int64_t block_tokens,
                                 int64_t n_blocks, bool lookahead) {
  const int64_t covered = int64_t(tokens.size()) - (lookahead ? 1 : 0);
  n_blocks = std::min(n_blocks, std::max<int64_t>(covered, 0) / block_tokens);
  std::vector<BlockKey> keys;
  keys.reserve(size_t(std::max<int64_t>(n_blocks, 0)));
  BlockKey parent = root;
  for (int64_t b = 0; b < n_blocks; ++b) {
    parent = chain_key(parent, tokens.subspan(size_t(b * block_tokens), size_t(block_tokens + (lookahead ? 1 : 0))));
    keys.push_back(parent);
  }
  return keys;
}

namespace {

// Every config field that changes what the forward pass computes.
std::string config_fingerprint(const ModelConfig& c) {
  std::ostringstream s;
  s.precision(17);
  s << c.architecture << '|' << c.model_type << '|' << c.vocab_size << '|' << c.hidden_size << '|' << c.num_hidden_layers
    << '|' << c.intermediate_size << '|' << c.rms_norm_eps << '|' << c.tie_word_embeddings << '|'
    << c.max_position_embeddings << '|' << c.num_attention_heads << '|' << c.q_lora_rank << '|' << c.kv_lora_rank << '|'
    << c.qk_nope_head_dim << '|' << c.qk_rope_head_dim << '|' << c.v_head_dim << '|' << c.rope_theta << '|'
    << c.yarn.enabled << '|' << c.yarn.factor << '|' << c.yarn.original_max_position_embeddings << '|'
    << c.yarn.beta_fast << '|' << c.yarn.beta_slow << '|' << c.yarn.mscale << '|' << c.yarn.mscale_all_dim << '|'
    << c.yarn.attention_factor << '|' << c.yarn.truncate << '|' << c.n_routed_experts << '|' << c.n_shared_experts
    << '|' << c.num_experts_per_tok << '|' << c.moe_intermediate_size << '|' << c.n_group << '|' << c.topk_group << '|'
    << to_string(c.topk_method) << '|' << to_string(c.scoring_func) << '|' << c.norm_topk_prob << '|'
    << c.routed_scaling_factor << '|' << c.first_k_dense_replace << '|' << c.moe_layer_freq << '|' << c.fp8 << '|'
    << c.fp8_block_rows << '|' << c.fp8_block_cols << '|' << c.fp8_ue8m0 << '|' << c.hc_mult << '|'
    << c.hc_sinkhorn_iters << '|' << c.hc_eps << '|' << c.num_nextn_predict_layers;
  if (c.sparse_attention() || c.shared_kv())  // V3.2 / V4: the indexer, layer types and the rest
    s << "|idx" << c.index_n_heads << '|' << c.index_head_dim << '|' << c.index_topk;
  if (c.shared_kv()) {
    s << "|v4" << c.head_dim << '|' << c.sliding_window << '|' << c.o_groups << '|' << c.o_lora_rank << '|'
      << c.compress_rate_csa << '|' << c.compress_rate_hca << '|' << c.compress_rope_theta << '|' << c.swiglu_limit << '|'
      << c.num_hash_layers << '|';
    for (LayerAttention a : c.layer_attention) s << to_string(a) << ',';
  }
  return s.str();
}

Digest weights_digest(const TensorSet& t) {
  Sha256 h;
  h.update("whale weights").update_u64(t.all().size());
  for (const auto& [name, ref] : t.all()) {  // std::map: sorted by name
    h.update(name).update_u64(name.size()).update(dtype_name(ref.dtype)).update_u64(ref.shape.size());
    for (int64_t d : ref.shape) h.update_u64(uint64_t(d));
    h.update_u64(ref.nbytes).update(ref.data, ref.nbytes);
  }
  return h.finish();
}

// What identifies the files behind the tensors without reading them; empty when they are not
// all plain files (weights built in memory).
std::string files_identity(const TensorSet& t) {
  std::ostringstream s;
  for (const std::string& f : t.files()) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return "";
    std::error_code ec;
    const auto abs = std::filesystem::weakly_canonical(f, ec);
    // ctime too: a rewrite that restores the modification time (cp -p, rsync -t) still changes it.
    s << (ec ? f : abs.string()) << '|' << st.st_size << '|' << st.st_mtim.tv_sec << '.' << st.st_mtim.tv_nsec << '|'
      << st.st_ctim.tv_sec << '.' << st.st_ctim.tv_nsec << '|' << st.st_ino << '|' << st.st_dev << '\n';
  }
  return s.str();
}

}  // namespace

Digest model_identity(const Model& model, const std::string& memo_dir) {
  Digest weights;
  const std::string files = memo_dir.empty() ? "" : files_identity(model.tensors());
  bool known = false;
  std::string memo;
  if (!files.empty()) {
    memo = memo_dir + "/" + Sha256::of("v" + std::to_string(kCacheFormatVersion) + "\n" + files).hex() + ".weights";
    std::ifstream in(memo);
    std::string hex;
    if (in >> hex)
      if (auto d = Digest::from_hex(hex)) weights = *d, known = true;
  }
  if (!known) {
    weights = weights_digest(model.tensors());
    if (!memo.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(memo_dir, ec);
      const std::string tmp = memo + ".tmp." + std::to_string(::getpid());
      try {  // a memo that can't be written costs a re-read next time, nothing else
        write_file_synced(tmp, weights.hex() + "\n");
        std::filesystem::rename(tmp, memo, ec);
      } catch (const std::exception&) {
      }
      std::filesystem::remove(tmp, ec);
    }
  }
  return Sha256().update("whale model identity").update(config_fingerprint(model.config())).update(weights.bytes.data(), 32).finish();
}

}  // namespace whale
