#include "model/model.h"

#include <algorithm>

#include "core/error.h"
#include "formats/hf_config.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/workspace.h"

namespace whale {

Model::Model(ModelConfig c, std::unique_ptr<TensorSet> t, ThreadPool& pool)
    : config_(std::move(c)), tensors_(std::move(t)), rope_(config_), pool_(pool), ws_(std::make_unique<Workspace>()) {
  weights_ = bind_hf_weights(*tensors_, config_);
  routers_.reserve(weights_->layers.size());
  for (const LayerWeights& L : weights_->layers) routers_.emplace_back(config_, &L.moe.e_score_correction_bias);
}

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, ThreadPool& pool) {
  ModelConfig config = load_hf_config(path);
  auto tensors = TensorSet::open(path);
  return std::unique_ptr<Model>(new Model(std::move(config), std::move(tensors), pool));
}

std::unique_ptr<KVCache> Model::make_cache(int64_t max_tokens, int64_t block_size) const {
  const int64_t blocks = std::max<int64_t>(1, (max_tokens + block_size - 1) / block_size);
  return std::make_unique<KVCache>(config_.num_hidden_layers, config_.kv_cache_dim(), block_size, blocks);
}

void Model::forward(const Batch& batch, KVCache& cache, float* logits) {
  const ModelConfig& c = config_;
  const int64_t T = int64_t(batch.tokens.size()), D = c.hidden_size, P = c.qk_rope_head_dim / 2;
  if (T == 0) return;
  for (int32_t tok : batch.tokens)
    if (tok < 0 || tok >= c.vocab_size) fail("token id ", tok, " is out of range (vocab_size ", c.vocab_size, ")");
  for (const BatchSeq& s : batch.seqs) {
    const int64_t capacity = int64_t(s.cache->blocks.size()) * cache.block_size();
    WHALE_CHECK(s.cache->length + s.n_tokens <= capacity, "forward: sequence has no cache room reserved");
  }

  Workspace& ws = *ws_;
  ws.resize(c, T);
  for (int64_t t = 0; t < T; ++t) dequantize_row(weights_->embed_tokens, batch.tokens[size_t(t)], &ws.h[size_t(t * D)]);
  for (const BatchSeq& s : batch.seqs)
    for (int64_t i = 0; i < s.n_tokens; ++i)
      rope_.angles(s.cache->length + i, &ws.cos[size_t((s.first + i) * P)], &ws.sin[size_t((s.first + i) * P)]);

  auto norm_rows = [&](const std::vector<float>& w) {
    pool_.parallel_for(T, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t)
        rmsnorm(&ws.h[size_t(t * D)], w.data(), D, float(c.rms_norm_eps), &ws.xn[size_t(t * D)]);
    });
  };
  auto add_out = [&] {
    for (int64_t i = 0; i < T * D; ++i) ws.h[size_t(i)] += ws.out[size_t(i)];
  };

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = weights_->layers[size_t(l)];
    norm_rows(L.input_layernorm);
    attention(l, batch, cache, ws);
    add_out();
    norm_rows(L.post_attention_layernorm);
    if (L.is_moe) moe(l, T, ws);
    else dense_ffn(L.mlp, ws.xn.data(), T, ws.out.data(), ws);
    add_out();
  }
  for (const BatchSeq& s : batch.seqs) s.cache->length += s.n_tokens;

  const int64_t R = int64_t(batch.logit_rows.size());
  if (R == 0) return;
  std::vector<float> final_norm(static_cast<size_t>(R * D));
  for (int64_t i = 0; i < R; ++i)
    rmsnorm(&ws.h[size_t(batch.logit_rows[size_t(i)] * D)], weights_->norm.data(), D, float(c.rms_norm_eps),
            &final_norm[size_t(i * D)]);
  matmul(weights_->lm_head, final_norm.data(), R, logits, pool_);
}

}  // namespace whale
