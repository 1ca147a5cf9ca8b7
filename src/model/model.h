// A loaded DeepSeek model and its forward pass over a batch of sequences.
//
//   h = embed(tokens)
//   for each layer:  h += MLA(rmsnorm(h));  h += FFN(rmsnorm(h))   (FFN: dense SwiGLU or MoE)
//   logits = lm_head(rmsnorm(h))
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "formats/safetensors.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/rope.h"
#include "model/router.h"
#include "model/weights.h"
#include "model/kv_pool.h"

namespace whale {

// The attention caches a model of config `c` keeps (kv_pool.h), one spec per group; with
// `with_mtp` the MTP module's as one more layer. Model::cache_groups() for a loaded model.
std::vector<CacheGroupSpec> cache_groups_of(const ModelConfig& c, bool with_mtp = false);
// Bytes of cache per token of context that whale allocates (float32 values; the windowed
// groups, a fixed amount per sequence, not counted).
double cache_bytes_per_token(const ModelConfig& c);

class Model {
 public:
  // Weights are copied into memory or mapped as `mode` says (core/mmap.h).
  static std::unique_ptr<Model> load(const std::string& path, ThreadPool& pool, LoadMode mode = LoadMode::kAuto);
  // A model over tensors already in memory (named as in Hugging Face checkpoints).
  static std::unique_ptr<Model> from_tensors(ModelConfig config, std::unique_ptr<TensorSet> tensors, ThreadPool& pool);
  ~Model();

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return *weights_; }
  const TensorSet& tensors() const { return *tensors_; }  // the files behind the weights
  ThreadPool& pool() const { return pool_; }
  void set_attention_form(AttentionForm f) { attention_form_ = f; }  // overrides Batch::attention
  // Official (the default of models whose reference quantizes its caches) or Float: see
  // config.h. Set before making caches: their groups (and block keys) name the numerics.
  void set_cache_numerics(CacheNumerics n) { config_.cache_numerics = n; }
  // Called after every main-model layer of forward() with the residual stream [T, hidden]
  // ([T, hc_mult, hidden] with mHC): for tests and debugging tools comparing layer by layer.
  using LayerProbe = std::function<void(int64_t layer, const float* h, int64_t n_tokens)>;
  void set_layer_probe(LayerProbe probe) { probe_ = std::move(probe); }

  // The attention caches this model's forward pass needs, one spec per group (kv_pool.h):
  // the MLA latents of every layer (group kLatentGroup), the lightning indexer's keys with
  // sparse attention (kIndexGroup), and with `with_mtp` the MTP module's as one more layer of
  // the same blocks (mtp_cache_layer()).
  std::vector<CacheGroupSpec> cache_groups(bool with_mtp = false) const;
  static constexpr size_t kLatentGroup = 0, kIndexGroup = 1;

  // A KV cache sized for `max_tokens` tokens in total, in blocks of `block_size`. With
  // `with_mtp`, each block also holds the MTP module's latents in one extra layer
  // (mtp_cache_layer()), so a sequence's block table serves both (serving with speculation).
  std::unique_ptr<KVPool> make_cache(int64_t max_tokens, int64_t block_size = 16, bool with_mtp = false) const;
  int64_t mtp_cache_layer() const { return config_.num_hidden_layers; }

  // Runs the batch, appending its tokens to each sequence's cache (which must have room:
  // see SeqCache::reserve). Writes vocab_size logits per entry of batch.logit_rows, and, if
  // `hidden` is given, the final hidden state (after the model's norm: the input of the LM
  // head and of MTP) of every token of the batch: [T, hidden_size].
  void forward(const Batch& batch, KVPool& cache, float* logits, float* hidden = nullptr);

  // Multi-token prediction module k. batch.tokens are the tokens *after* the positions whose
  // main-model hidden states `hidden_in` [T, hidden] are given; the module's own cache (one
  // layer: see make_mtp_cache) grows like the main one. Writes logits for batch.logit_rows
  // and, if given, the module's normed output of every token (the `hidden_in` of a further
  // draft step): [T, hidden_size]. cache_layer: where the module's latents live, 0 in its own
  // cache (make_mtp_cache), mtp_cache_layer() in a shared one (make_cache with_mtp).
  void mtp_forward(int64_t k, const Batch& batch, const float* hidden_in, KVPool& cache, float* logits,
                   float* hidden_out = nullptr, int64_t cache_layer = 0);
  int64_t mtp_modules() const { return int64_t(weights_->mtp.size()); }
  // Values per token of `hidden` (forward) and `hidden_in` (mtp_forward): hidden_size, or for
  // DeepSeek-V4 the hc_mult residual streams before hc_head, which its MTP module reads.
  int64_t mtp_hidden_width() const {
    return config_.shared_kv() ? config_.hidden_size * config_.hc_mult : config_.hidden_size;
  }
  std::unique_ptr<KVPool> make_mtp_cache(int64_t max_tokens, int64_t block_size = 16) const;

 private:
  Model(ModelConfig c, std::unique_ptr<TensorSet> t, ThreadPool& pool);

  struct Workspace;  // activations, resized per step
  void check_batch(const Batch& batch, const KVPool& cache) const;
  void embed(const Weight& table, const Batch& batch, Workspace& ws);
  // One decoder layer on ws.h (a single stream, or hc_mult streams with mHC).
  void layer_forward(const LayerWeights& L, const Router& router, int64_t cache_layer, const Batch& batch,
                     KVPool& cache, Workspace& ws);
  // Residual plumbing around a sublayer: the input it reads (collapsed streams with mHC) and
  // how its output ws.out is added back.
  const float* sublayer_input(const HyperConnectionWeights& site, int64_t T, Workspace& ws);
  void sublayer_output(const HyperConnectionWeights& site, int64_t T, Workspace& ws);
  // Final hidden states (hc_head collapse, then `norm`): of every token into `hidden` if
  // given; LM-head logits of batch.logit_rows.
  void head(const HyperHeadWeights& hc_head, const std::vector<float>& norm, const Weight& lm_head,
            const Batch& batch, Workspace& ws, float* logits, float* hidden);

  // The keys each new token of a sequence attends to: per token, the positions the lightning
  // indexer selected (ascending), or empty for all of its context (dense attention, or a
  // context no longer than index_topk).
  using Selection = std::vector<std::vector<int32_t>>;
  void attention(const AttentionWeights& A, int64_t cache_layer, const Batch& batch, KVPool& cache, Workspace& ws);
  void indexer_keys(const IndexerWeights& I, int64_t T, Workspace& ws);
  Selection select_tokens(int64_t cache_layer, const BatchSeq& s, const KVPool& cache, Workspace& ws);
  void attention_mha(const AttentionWeights& A, int64_t cache_layer, const BatchSeq& s, const KVPool& cache,
                     const Selection& sel, Workspace& ws);
  void attention_absorbed(const AttentionWeights& A, int64_t cache_layer, const BatchSeq& s, const KVPool& cache,
                          const Selection& sel, Workspace& ws);
  void attention_absorbed_chunk(const AttentionWeights& A, int64_t cache_layer, const BatchSeq& s, const KVPool& cache,
                                const Selection& sel, Workspace& ws);
  // DeepSeek-V4's shared-KV attention of one layer (shared_kv.cpp), and its compressed entries.
  void attention_v4(const AttentionWeights& A, int64_t layer, const Batch& batch, KVPool& cache, Workspace& ws);
  void compress_entries(const CompressorWeights& C, int64_t m, bool overlap, const BatchSeq& s, int64_t layer,
                        KVPool& cache, size_t state_group, int64_t state_offset, size_t entry_group, int64_t entry_offset,
                        bool index_key);
  void dense_ffn(const MLPWeights& w, const float* x, int64_t n_tok, float* out, Workspace& ws);
  void moe(const MoEWeights& M, const Router& router, const Batch& batch, Workspace& ws);

  ModelConfig config_;
  std::unique_ptr<TensorSet> tensors_;
  std::unique_ptr<ModelWeights> weights_;
  std::vector<Router> routers_;      // per layer (unused for dense layers)
  std::vector<Router> mtp_routers_;  // per MTP module
  Rope rope_;           // MLA's RoPE; V4: the sliding layers' (rope_theta, no scaling)
  Rope rope_compress_;  // V4: CSA / HCA layers' (compress_rope_theta with YaRN)
  // V4 cache groups (indices into cache_groups(), -1 when absent) and each layer's index among
  // the layers of its type in the CSA / HCA groups.
  struct V4Groups {
    int64_t kv = -1, csa_state = -1, hca_state = -1, csa_entries = -1, hca_entries = -1;
    int64_t n_csa = 0, n_hca = 0;  // layers of each type
  } v4_;
  std::vector<int64_t> v4_type_layer_;
  ThreadPool& pool_;
  AttentionForm attention_form_ = AttentionForm::Auto;
  std::unique_ptr<Workspace> ws_;
  LayerProbe probe_;
};

}  // namespace whale
