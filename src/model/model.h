// A loaded DeepSeek model and its forward pass over a batch of sequences.
//
//   h = embed(tokens)
//   for each layer:  h += MLA(rmsnorm(h));  h += FFN(rmsnorm(h))   (FFN: dense SwiGLU or MoE)
//   logits = lm_head(rmsnorm(h))
#pragma once
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
#include "runtime/kv_cache.h"

namespace whale {

// MLA has two equivalent forms. MHA decompresses per-head keys and values from the cached
// latents (cheap when many queries share them: prefill); absorbed folds kv_b_proj into the
// query and output so attention runs directly on the 576-wide latents (cheap for decode).
enum class AttentionForm { Auto, MHA, Absorbed };

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& path, ThreadPool& pool);
  ~Model();

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return *weights_; }
  ThreadPool& pool() const { return pool_; }
  void set_attention_form(AttentionForm f) { attention_form_ = f; }

  // A KV cache sized for `max_tokens` tokens in total, in blocks of `block_size`.
  std::unique_ptr<KVCache> make_cache(int64_t max_tokens, int64_t block_size = 16) const;

  // Runs the batch, appending its tokens to each sequence's cache (which must have room:
  // see SeqCache::reserve). Writes vocab_size logits per entry of batch.logit_rows.
  void forward(const Batch& batch, KVCache& cache, float* logits);

 private:
  Model(ModelConfig c, std::unique_ptr<TensorSet> t, ThreadPool& pool);

  struct Workspace;  // activations, resized per step
  void attention(int64_t layer, const Batch& batch, KVCache& cache, Workspace& ws);
  void attention_mha(int64_t layer, const BatchSeq& s, const KVCache& cache, Workspace& ws);
  void attention_absorbed(int64_t layer, const BatchSeq& s, const KVCache& cache, Workspace& ws);
  void dense_ffn(const MLPWeights& w, const float* x, int64_t n_tok, float* out, Workspace& ws);
  void moe(int64_t layer, int64_t n_tok, Workspace& ws);

  ModelConfig config_;
  std::unique_ptr<TensorSet> tensors_;
  std::unique_ptr<ModelWeights> weights_;
  std::vector<Router> routers_;  // per layer (unused for dense layers)
  Rope rope_;
  ThreadPool& pool_;
  AttentionForm attention_form_ = AttentionForm::Auto;
  std::unique_ptr<Workspace> ws_;
};

}  // namespace whale
