#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/gguf_model.h"
#include "model/hf_config.h"
#include "kernels/matmul.h"
#include "kernels/mhc.h"
#include "kernels/ops.h"
#include "model/workspace.h"

namespace whale {

namespace {
Rope main_rope(const ModelConfig& c) {
  if (!c.shared_kv()) return Rope(c);
  Rope r(c.qk_rope_head_dim, c.rope_theta, YarnConfig{});
  r.softmax_scale = float(1.0 / std::sqrt(double(c.head_dim)));
  return r;
}
}  // namespace

Model::Model(ModelConfig c, std::unique_ptr<TensorSet> t, ThreadPool& pool)
    : config_(std::move(c)), tensors_(std::move(t)), rope_(main_rope(config_)),
      rope_compress_(config_.qk_rope_head_dim, config_.compress_rope_theta, config_.yarn), pool_(pool),
      ws_(std::make_unique<Workspace>()) {
  rope_compress_.softmax_scale = rope_.softmax_scale;
  if (config_.shared_kv()) {  // the order of cache_groups(): kv, states, entries; absent types take no group
    for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
      const LayerAttention a = config_.attention_of(l);
      v4_type_layer_.push_back(a == LayerAttention::CSA ? v4_.n_csa++ : a == LayerAttention::HCA ? v4_.n_hca++ : -1);
    }
    int64_t g = 0;
    v4_.kv = g++;
    if (v4_.n_csa) v4_.csa_state = g++;
    if (v4_.n_hca) v4_.hca_state = g++;
    if (v4_.n_csa) v4_.csa_entries = g++;
    if (v4_.n_hca) v4_.hca_entries = g++;
  }
  weights_ = bind_hf_weights(*tensors_, config_);
  routers_.reserve(weights_->layers.size());
  for (const LayerWeights& L : weights_->layers) routers_.emplace_back(config_, &L.moe.e_score_correction_bias);
  for (const MtpWeights& m : weights_->mtp) mtp_routers_.emplace_back(config_, &m.block.moe.e_score_correction_bias);
}

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, ThreadPool& pool, LoadMode mode) {
  if (is_gguf_file(path)) {
    std::shared_ptr<const GgufFile> gguf = GgufFile::open(path, mode);
    ModelConfig config = gguf_model_config(*gguf);
    auto tensors = gguf_tensor_set(gguf, config);
    return std::unique_ptr<Model>(new Model(std::move(config), std::move(tensors), pool));
  }
  ModelConfig config = load_hf_config(path);
  auto tensors = TensorSet::open(path, mode);
  return std::unique_ptr<Model>(new Model(std::move(config), std::move(tensors), pool));
}

std::unique_ptr<Model> Model::from_tensors(ModelConfig config, std::unique_ptr<TensorSet> tensors, ThreadPool& pool) {
  return std::unique_ptr<Model>(new Model(std::move(config), std::move(tensors), pool));
}

std::vector<CacheGroupSpec> cache_groups_of(const ModelConfig& c, bool with_mtp) {
  const int64_t layers = c.num_hidden_layers + (with_mtp ? 1 : 0);
  if (c.shared_kv()) {  // V4: per-token and per-window values, appended like MLA's latents (shared_kv.cpp)
    const bool fp8 = c.cache_numerics == CacheNumerics::Official;
    const int64_t hd = c.head_dim, ihd = c.index_head_dim;
    int64_t n_csa = 0, n_hca = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const LayerAttention a = c.attention_of(l);
      n_csa += a == LayerAttention::CSA;
      n_hca += a == LayerAttention::HCA;
    }
    // The order Model's constructor numbers them in: kv, states, entries; absent types take no group.
    // Windows (shared_kv.cpp): a step's tokens read the kv of the sliding_window − 1 tokens before
    // them; an entry completed in a step reads the compressor inputs of its 2m (CSA, overlapping)
    // or m (HCA) tokens, so at most 2m − 1 or m − 1 before the step's first token.
    std::vector<CacheGroupSpec> g = {{fp8 ? "v4_kv_fp8" : "v4_kv", layers, hd, 1, c.sliding_window}};
    if (n_csa) g.push_back({"v4_csa_state", n_csa, 4 * hd + 4 * ihd, 1, 2 * c.compress_rate_csa});
    if (n_hca) g.push_back({"v4_hca_state", n_hca, 2 * hd, 1, c.compress_rate_hca});
    if (n_csa) g.push_back({fp8 ? "v4_csa_entries_fp8" : "v4_csa_entries", n_csa, hd + ihd, c.compress_rate_csa});
    if (n_hca) g.push_back({fp8 ? "v4_hca_entries_fp8" : "v4_hca_entries", n_hca, hd, c.compress_rate_hca});
    return g;
  }
  if (!c.sparse_attention()) return {{"mla_latent", layers, c.kv_cache_dim()}};
  // The kinds name the numerics: blocks of one are never read as the other (block_key.h).
  const bool fp8 = c.cache_numerics == CacheNumerics::Official;
  return {{fp8 ? "mla_latent_fp8" : "mla_latent", layers, c.kv_cache_dim()},
          {fp8 ? "index_key_fp8" : "index_key", layers, c.index_head_dim}};
}

double cache_bytes_per_token(const ModelConfig& c) {
  double bytes = 0;
  for (const CacheGroupSpec& g : cache_groups_of(c))  // windowed groups: a fixed amount, not per token
    if (g.window == 0) bytes += double(g.n_layers) * double(g.dim) * 4.0 / double(g.stride);
  return bytes;
}

std::vector<CacheGroupSpec> Model::cache_groups(bool with_mtp) const {
  std::vector<CacheGroupSpec> g = cache_groups_of(config_, with_mtp);
  if (config_.shared_kv()) {  // the indices the forward pass uses name the same groups
    WHALE_CHECK(g[size_t(v4_.kv)].kind.rfind("v4_kv", 0) == 0 && (!v4_.n_csa || g[size_t(v4_.csa_entries)].stride == config_.compress_rate_csa) &&
                    (!v4_.n_hca || g[size_t(v4_.hca_state)].kind == "v4_hca_state"),
                "internal: V4 cache groups out of order");
  }
  return g;
}

std::unique_ptr<KVPool> Model::make_cache(int64_t max_tokens, int64_t block_size, bool with_mtp) const {
  const int64_t blocks = std::max<int64_t>(1, (max_tokens + block_size - 1) / block_size);
  return std::make_unique<KVPool>(cache_groups(with_mtp), block_size, blocks);
}

std::unique_ptr<KVPool> Model::make_mtp_cache(int64_t max_tokens, int64_t block_size) const {
  const int64_t blocks = std::max<int64_t>(1, (max_tokens + block_size - 1) / block_size);
  std::vector<CacheGroupSpec> groups = cache_groups();
  for (CacheGroupSpec& g : groups) g.n_layers = 1;  // the module's own layer only
  return std::make_unique<KVPool>(std::move(groups), block_size, blocks);
}

void Model::check_batch(const Batch& batch, const KVPool& cache) const {
  for (int32_t tok : batch.tokens)
    if (tok < 0 || tok >= config_.vocab_size) fail("token id ", tok, " is out of range (vocab_size ", config_.vocab_size, ")");
  for (const BatchSeq& s : batch.seqs) {
    const int64_t capacity = int64_t(s.cache->blocks.size()) * cache.block_size();
    WHALE_CHECK(s.cache->length + s.n_tokens <= capacity, "forward: sequence has no cache room reserved");
  }
}

// Token embeddings into the residual: one stream, or copied into each of the hc_mult streams.
void Model::embed(const Weight& table, const Batch& batch, Workspace& ws) {
  const int64_t T = int64_t(batch.tokens.size()), D = config_.hidden_size, P = config_.qk_rope_head_dim / 2;
  const int64_t n = std::max<int64_t>(1, config_.hc_mult);
  for (int64_t t = 0; t < T; ++t) {
    float* x = &ws.h[size_t(t * n * D)];
    dequantize_row(table, batch.tokens[size_t(t)], x);
    for (int64_t i = 1; i < n; ++i) std::memcpy(x + i * D, x, size_t(D) * sizeof(float));
  }
  for (const BatchSeq& s : batch.seqs)
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      const size_t at = size_t((s.first + i) * P);
      rope_.angles(s.cache->length + i, &ws.cos[at], &ws.sin[at]);
      if (config_.shared_kv()) rope_compress_.angles(s.cache->length + i, &ws.ccos[at], &ws.csin[at]);
    }
}

const float* Model::sublayer_input(const HyperConnectionWeights& site, int64_t T, Workspace& ws) {
  if (site.empty()) return ws.h.data();
  const ModelConfig& c = config_;
  const int64_t n = c.hc_mult, D = c.hidden_size;
  const HyperSiteMath m{n, D, float(c.rms_norm_eps), float(c.hc_eps), int(c.hc_sinkhorn_iters)};
  pool_.parallel_for(T, [&](int64_t b, int64_t e) {
    std::vector<float> pre(static_cast<size_t>(n));
    for (int64_t t = b; t < e; ++t) {
      const float* x = &ws.h[size_t(t * n * D)];
      mhc_site_weights(m, x, site.fn, site.base.data(), site.scale.data(), pre.data(), &ws.hc_post[size_t(t * n)],
                       &ws.hc_comb[size_t(t * n * n)]);
      mhc_collapse(x, pre.data(), n, D, &ws.y[size_t(t * D)]);
    }
  });
  return ws.y.data();
}

void Model::sublayer_output(const HyperConnectionWeights& site, int64_t T, Workspace& ws) {
  const int64_t D = config_.hidden_size;
  if (site.empty()) {
    for (int64_t i = 0; i < T * D; ++i) ws.h[size_t(i)] += ws.out[size_t(i)];
    return;
  }
  const int64_t n = config_.hc_mult;
  pool_.parallel_for(T, [&](int64_t b, int64_t e) {
    std::vector<float> scratch(static_cast<size_t>(n * D));
    for (int64_t t = b; t < e; ++t)
      mhc_expand(&ws.h[size_t(t * n * D)], &ws.hc_post[size_t(t * n)], &ws.hc_comb[size_t(t * n * n)],
                 &ws.out[size_t(t * D)], n, D, scratch.data());
  });
}

void Model::layer_forward(const LayerWeights& L, const Router& router, int64_t cache_layer, const Batch& batch,
                          KVPool& cache, Workspace& ws) {
  const int64_t T = int64_t(batch.tokens.size()), D = config_.hidden_size;
  auto norm_rows = [&](const float* in, const std::vector<float>& w) {
    pool_.parallel_for(T, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t)
        rmsnorm(in + t * D, w.data(), D, float(config_.rms_norm_eps), &ws.xn[size_t(t * D)]);
    });
  };
  norm_rows(sublayer_input(L.hc_attn, T, ws), L.input_layernorm);
  if (config_.shared_kv()) attention_v4(L.attn, cache_layer, batch, cache, ws);
  else attention(L.attn, cache_layer, batch, cache, ws);
  sublayer_output(L.hc_attn, T, ws);
  norm_rows(sublayer_input(L.hc_ffn, T, ws), L.post_attention_layernorm);
  if (L.is_moe) moe(L.moe, router, batch, ws);
  else dense_ffn(L.mlp, ws.xn.data(), T, ws.out.data(), ws);
  sublayer_output(L.hc_ffn, T, ws);
}

void Model::head(const HyperHeadWeights& hc_head, const std::vector<float>& norm, const Weight& lm_head,
                 const Batch& batch, Workspace& ws, float* logits, float* hidden) {
  const ModelConfig& c = config_;
  const int64_t T = int64_t(batch.tokens.size()), D = c.hidden_size;
  auto final_hidden = [&](int64_t t, float* out) {
    if (hc_head.empty()) {
      std::memcpy(out, &ws.h[size_t(t * D)], size_t(D) * sizeof(float));
    } else {
      const HyperSiteMath m{c.hc_mult, D, float(c.rms_norm_eps), float(c.hc_eps), int(c.hc_sinkhorn_iters)};
      mhc_head(m, &ws.h[size_t(t * c.hc_mult * D)], hc_head.fn, hc_head.base.data(), hc_head.scale, out);
    }
    rmsnorm(out, norm.data(), D, float(c.rms_norm_eps), out);
  };
  const bool streams = c.shared_kv();  // V4: MTP reads the residual streams, not the normed output
  if (hidden && streams) std::memcpy(hidden, ws.h.data(), size_t(T * mtp_hidden_width()) * sizeof(float));
  else if (hidden)
    for (int64_t t = 0; t < T; ++t) final_hidden(t, hidden + t * D);
  const int64_t R = int64_t(batch.logit_rows.size());
  if (!logits || R == 0) return;
  std::vector<float> rows(static_cast<size_t>(R * D));
  for (int64_t i = 0; i < R; ++i) {
    const int64_t t = batch.logit_rows[size_t(i)];
    if (hidden && !streams) std::memcpy(&rows[size_t(i * D)], hidden + t * D, size_t(D) * sizeof(float));
    else final_hidden(t, &rows[size_t(i * D)]);
  }
  matmul(lm_head, rows.data(), R, logits, pool_);
}

void Model::forward(const Batch& batch, KVPool& cache, float* logits, float* hidden) {
  const int64_t T = int64_t(batch.tokens.size());
  if (T == 0) return;
  check_batch(batch, cache);
  Workspace& ws = *ws_;
  ws.resize(config_, T);
  embed(weights_->embed_tokens, batch, ws);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    layer_forward(weights_->layers[size_t(l)], routers_[size_t(l)], l, batch, cache, ws);
    if (probe_) probe_(l, ws.h.data(), T);
  }
  for (const BatchSeq& s : batch.seqs) s.cache->length += s.n_tokens;
  head(weights_->hc_head, weights_->norm, weights_->lm_head, batch, ws, logits, hidden);
}

void Model::mtp_forward(int64_t k, const Batch& batch, const float* hidden_in, KVPool& cache, float* logits,
                        float* hidden_out, int64_t cache_layer) {
  if (k < 0 || k >= mtp_modules()) fail("this model has no MTP module ", k, " (it has ", mtp_modules(), ")");
  const MtpWeights& m = weights_->mtp[size_t(k)];
  const ModelConfig& c = config_;
  const int64_t T = int64_t(batch.tokens.size()), D = c.hidden_size, n = std::max<int64_t>(1, c.hc_mult);
  if (T == 0) return;
  check_batch(batch, cache);
  Workspace& ws = *ws_;
  ws.resize(c, T);
  embed(m.embed_tokens, batch, ws);  // fills cos/sin; the embedding is re-read below
  if (c.shared_kv()) {
    // V4: z_i = e_proj(enorm(emb)) + h_proj(hnorm(X_i)) for each residual stream i of hidden_in.
    std::vector<float> e(static_cast<size_t>(T * D)), hs(static_cast<size_t>(T * n * D)), ez(e.size()), hz(hs.size());
    for (int64_t t = 0; t < T; ++t) {
      rmsnorm(&ws.h[size_t(t * n * D)], m.enorm.data(), D, float(c.rms_norm_eps), &e[size_t(t * D)]);
      for (int64_t i = 0; i < n; ++i)
        rmsnorm(hidden_in + (t * n + i) * D, m.hnorm.data(), D, float(c.rms_norm_eps), &hs[size_t((t * n + i) * D)]);
    }
    matmul_batch({{&m.e_proj, e.data(), T, ez.data()}, {&m.h_proj, hs.data(), T * n, hz.data()}}, pool_);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < D; ++d)
          ws.h[size_t((t * n + i) * D + d)] = ez[size_t(t * D + d)] + hz[size_t((t * n + i) * D + d)];
  } else {
  // z = eh_proj([enorm(emb(token)); hnorm(h)])   (embedding half first, as DeepSeek's checkpoints)
  std::vector<float> cat(static_cast<size_t>(T * 2 * D));
  for (int64_t t = 0; t < T; ++t) {
    float* row = &cat[size_t(t * 2 * D)];
    rmsnorm(&ws.h[size_t(t * n * D)], m.enorm.data(), D, float(c.rms_norm_eps), row);
    rmsnorm(hidden_in + t * D, m.hnorm.data(), D, float(c.rms_norm_eps), row + D);
  }
  matmul(m.eh_proj, cat.data(), T, ws.out.data(), pool_);  // [T, hidden]
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(&ws.h[size_t((t * n + i) * D)], &ws.out[size_t(t * D)], size_t(D) * sizeof(float));
  }
  WHALE_CHECK(cache_layer >= 0 && cache_layer < cache.n_layers(), "mtp_forward: no cache layer ", cache_layer);
  layer_forward(m.block, mtp_routers_[size_t(k)], cache_layer, batch, cache, ws);
  for (const BatchSeq& s : batch.seqs) s.cache->length += s.n_tokens;
  head(m.hc_head, m.shared_head_norm, m.head, batch, ws, logits, hidden_out);
}

}  // namespace whale
