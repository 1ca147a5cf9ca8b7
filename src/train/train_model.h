// The training twin of the inference model: the same DeepSeek/R2 architecture (embedding,
// MLA with RoPE, dense SwiGLU, DeepSeekMoE with sigmoid/softmax routing and shared experts,
// mHC residual streams, MTP modules, LM head) with float32 master weights in one flat buffer,
// a forward pass that keeps its activations and a backward pass that fills a gradient buffer
// of the same layout. Parameters carry the Hugging Face names of hf_param_specs(), so a
// checkpoint is an ordinary whale model directory that `whale run`/`serve` load.
//
// Losses are expressed through the log-probabilities of target tokens: forward() returns
// logp for every predicted token, backward() takes dLoss/dlogp. Cross-entropy, SFT masks and
// GRPO's clipped objective all reduce to that (train/objective.h).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/config.h"
#include "model/model.h"
#include "model/param_specs.h"

namespace whale::train {

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  ParamRole role;
  size_t offset;  // into params()/grads()
  int64_t numel;
};

struct LinearP { float* w = nullptr; float* g = nullptr; int64_t out = 0, in = 0; };  // W [out, in]
struct VecP { float* w = nullptr; float* g = nullptr; int64_t n = 0; };
struct HyperP {
  LinearP fn;
  VecP base, scale;
  bool empty() const { return fn.w == nullptr; }
};
struct MlpP { LinearP gate, up, down; };
struct LayerP {
  VecP input_ln, post_ln, q_a_ln, kv_a_ln;
  LinearP q_a, q_b, q_proj, kv_a, kv_b, o;
  HyperP hc_attn, hc_ffn;
  bool is_moe = false;
  MlpP mlp;                   // dense layers
  LinearP router;             // MoE: gate [E, D]
  std::vector<float>* bias = nullptr;  // e_score_correction_bias [E]: chooses experts, not trained by gradient
  std::vector<MlpP> experts;
  MlpP shared;
  bool has_shared = false;
};
struct MtpP {
  VecP enorm, hnorm, norm;
  LinearP eh_proj;
  LayerP block;
  HyperP hc_head;
};

// B sequences of T tokens. weight[b][t] (t >= 1) scales the loss of predicting tokens[b][t]
// (from position t-1, and by MTP module k from position t-2-k); 0 means not predicted.
struct TrainBatch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> tokens;  // [B, T]
  std::vector<float> weight;    // [B, T]
};

struct LayerActs;
struct StackActs;

class TrainModel {
 public:
  TrainModel(const ModelConfig& c, ThreadPool& pool);
  ~TrainModel();

  const ModelConfig& config() const { return config_; }
  const std::vector<ParamEntry>& table() const { return table_; }
  std::vector<float>& params() { return params_; }
  const std::vector<float>& params() const { return params_; }
  std::vector<float>& grads() { return grads_; }
  const ParamEntry& entry(const std::string& name) const;
  // Non-trained buffers (router correction biases), by name.
  std::map<std::string, std::vector<float>>& buffers() { return buffers_; }
  const std::map<std::string, std::vector<float>>& buffers() const { return buffers_; }

  // GPT-style init: projections and embeddings N(0, 0.02), output projections (o_proj,
  // down_proj, eh_proj) scaled by 1/sqrt(2·layers), norms and mHC scales one, mHC fn N(0, 0.02),
  // biases zero.
  void init_random(uint64_t seed);
  // Reads a model directory's tensors (any stored dtype) into the float32 parameters.
  void load_weights(const std::string& dir);

  // forward: logp [B, T] of every token with weight != 0 (0 elsewhere) for the main head and
  // for each MTP module k (mtp_logp[k]); also the sequence-wise balance loss (Σ over MoE
  // layers of mean over sequences of Σ_i f_i P_i, unweighted).
  void forward(const TrainBatch& batch, std::vector<float>& logp, std::vector<std::vector<float>>& mtp_logp);
  double balance_loss() const { return balance_loss_; }
  // Accumulates into grads(): dlogp [B, T] for the main head, dmtp[k] for MTP module k (may be
  // empty), and balance_weight · the balance loss. Must follow forward() on the same batch.
  void backward(const std::vector<float>& dlogp, const std::vector<std::vector<float>>& dmtp, float balance_weight);

  // Tokens routed to each expert of each MoE layer (main layers, then MTP blocks) since the
  // last reset; the auxiliary-loss-free bias update reads it.
  std::vector<std::vector<int64_t>>& expert_load() { return expert_load_; }
  // b_i += gamma · sign(mean load - load_i) per MoE layer, then resets the counts.
  // Returns the mean over layers of max_i load_i / mean - 1 (MaxVio) before the update.
  double update_router_bias(float gamma);

  void zero_grads();

 private:
  LayerP bind_layer(int64_t index);
  HyperP bind_hyper(const std::string& prefix);
  LinearP linear(const std::string& name);
  VecP vec(const std::string& name);

  // One stack of layers over B sequences of S positions (N = B·S tokens).
  void stack_forward(const std::vector<const LayerP*>& layers, int64_t B, int64_t S, const float* x0, StackActs& a,
                     size_t first_load_slot);
  void stack_backward(const std::vector<const LayerP*>& layers, int64_t B, int64_t S, StackActs& a, float* dx,
                      float balance_weight);
  // The layer's input is a.x_in [N, n·D] (filled by the caller); x_out [N, n·D].
  void layer_forward(const LayerP& L, int64_t B, int64_t S, LayerActs& a, float* x_out, std::vector<int64_t>* load);
  // dx_in [N, n·D] is overwritten (it must not alias dx_out).
  void layer_backward(const LayerP& L, int64_t B, int64_t S, LayerActs& a, const float* dx_out, float* dx_in,
                      float balance_weight);

  ModelConfig config_;
  ThreadPool& pool_;
  std::vector<ParamEntry> table_;
  std::map<std::string, size_t> index_;
  std::vector<float> params_, grads_;
  std::map<std::string, std::vector<float>> buffers_;
  VecP embed_, norm_;
  LinearP lm_head_;
  HyperP hc_head_;
  std::vector<LayerP> layers_;
  std::vector<MtpP> mtp_;
  std::vector<std::vector<int64_t>> expert_load_;
  double balance_loss_ = 0;

  struct Saved;
  std::unique_ptr<Saved> saved_;  // activations of the last forward()
};

// Writes a whale model directory into `dir` (created if needed, files fsynced): config.json
// (given), model.safetensors (float32, or bf16 for the weights when `bf16`; biases and mHC
// tensors stay float32) and `extra_files` (relative name -> contents: tokenizer, training
// state).
void write_model_files(const TrainModel& m, const std::string& config_json, const std::string& dir, bool bf16 = false,
                       const std::map<std::string, std::string>& extra_files = {});
// The same, built beside its final name and renamed into place, so an interruption never
// leaves half of one.
void save_model(const TrainModel& m, const std::string& config_json, const std::string& dir, bool bf16 = false,
                const std::map<std::string, std::string>& extra_files = {});

// The inference model of the current weights, without a copy: its tensors point into the
// training model's parameters (valid while they are not updated), for sampling (GRPO).
std::unique_ptr<Model> inference_model(const TrainModel& m, ThreadPool& pool);

}  // namespace whale::train
