#include "train/train_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/dtype.h"
#include "core/durable.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "train/acts.h"
#include "train/grad_ops.h"
#include "train/mhc_grad.h"

namespace whale::train {

double layer_balance_loss(const ModelConfig& c, const LayerActs& a, int64_t B, int64_t S);  // train_layer.cpp

namespace {
using Vec = std::vector<float>;

struct MtpActs {
  int64_t S = 0;                       // positions of this depth per sequence
  Vec e, e_inv, en, h_inv, hn, cat;    // [M, D] embedding rows, normed; [M, D] hidden normed; [M, 2D]
  Vec x0;                              // [M, n·D] z copied into the streams
  StackActs stack;
};

float as_f32(const TensorRef& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: { float v; std::memcpy(&v, t.data + 4 * i, 4); return v; }
    case DType::BF16: { uint16_t v; std::memcpy(&v, t.data + 2 * i, 2); return bf16_to_f32(v); }
    case DType::F16: { uint16_t v; std::memcpy(&v, t.data + 2 * i, 2); return f16_to_f32(v); }
    default: fail(t.file, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype), "; training loads F32, BF16 or F16");
  }
}
}  // namespace

struct TrainModel::Saved {
  TrainBatch batch;
  StackActs main;
  std::vector<MtpActs> mtp;
};

TrainModel::TrainModel(const ModelConfig& c, ThreadPool& pool) : config_(c), pool_(pool) {
  WHALE_CHECK(!c.fp8, "training needs float weights: the config asks for FP8");
  if (c.shared_kv() || c.sparse_attention())
    fail("training runs DeepSeek-V2/V3/R2-style models; ", c.architecture, " (", c.shared_kv() ? "shared-KV" : "sparse",
         " attention) is inference-only in whale for now");
  size_t offset = 0;
  for (const ParamSpec& s : hf_param_specs(c)) {
    int64_t numel = 1;
    for (int64_t d : s.shape) numel *= d;
    if (s.role == ParamRole::Bias) {
      buffers_[s.name].assign(static_cast<size_t>(numel), 0.0f);
      continue;
    }
    index_[s.name] = table_.size();
    table_.push_back({s.name, s.shape, s.role, offset, numel});
    offset += size_t(numel);
  }
  params_.assign(offset, 0.0f);
  grads_.assign(offset, 0.0f);

  embed_ = vec("model.embed_tokens.weight");
  norm_ = vec("model.norm.weight");
  lm_head_ = linear(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  if (c.hyper_connections()) hc_head_ = bind_hyper("model.hc_head");
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) layers_.push_back(bind_layer(l));
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const std::string p = "model.layers." + std::to_string(c.num_hidden_layers + k);
    MtpP m;
    m.enorm = vec(p + ".enorm.weight");
    m.hnorm = vec(p + ".hnorm.weight");
    m.norm = vec(p + ".shared_head.norm.weight");
    m.eh_proj = linear(p + ".eh_proj.weight");
    m.block = bind_layer(c.num_hidden_layers + k);
    if (c.hyper_connections()) m.hc_head = bind_hyper(p + ".hc_head");
    mtp_.push_back(std::move(m));
  }
  for (const LayerP& L : layers_)
    if (L.is_moe) expert_load_.emplace_back(static_cast<size_t>(c.n_routed_experts), 0);
  for (const MtpP& m : mtp_)
    if (m.block.is_moe) expert_load_.emplace_back(static_cast<size_t>(c.n_routed_experts), 0);
}

TrainModel::~TrainModel() = default;

const ParamEntry& TrainModel::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail("training model has no parameter '", name, "'");
  return table_[it->second];
}

LinearP TrainModel::linear(const std::string& name) {
  const ParamEntry& e = entry(name);
  return {&params_[e.offset], &grads_[e.offset], e.shape[0], e.shape[1]};
}

VecP TrainModel::vec(const std::string& name) {
  const ParamEntry& e = entry(name);
  return {&params_[e.offset], &grads_[e.offset], e.numel};
}

HyperP TrainModel::bind_hyper(const std::string& p) { return {linear(p + "_fn"), vec(p + "_base"), vec(p + "_scale")}; }

LayerP TrainModel::bind_layer(int64_t index) {
  const ModelConfig& c = config_;
  const std::string p = "model.layers." + std::to_string(index), a = p + ".self_attn";
  LayerP L;
  L.input_ln = vec(p + ".input_layernorm.weight");
  L.post_ln = vec(p + ".post_attention_layernorm.weight");
  if (c.q_lora_rank > 0) {
    L.q_a = linear(a + ".q_a_proj.weight");
    L.q_a_ln = vec(a + ".q_a_layernorm.weight");
    L.q_b = linear(a + ".q_b_proj.weight");
  } else {
    L.q_proj = linear(a + ".q_proj.weight");
  }
  L.kv_a = linear(a + ".kv_a_proj_with_mqa.weight");
  L.kv_a_ln = vec(a + ".kv_a_layernorm.weight");
  L.kv_b = linear(a + ".kv_b_proj.weight");
  L.o = linear(a + ".o_proj.weight");
  if (c.hyper_connections()) {
    L.hc_attn = bind_hyper(p + ".hc_attn");
    L.hc_ffn = bind_hyper(p + ".hc_ffn");
  }
  auto mlp = [&](const std::string& q) { return MlpP{linear(q + ".gate_proj.weight"), linear(q + ".up_proj.weight"), linear(q + ".down_proj.weight")}; };
  // MTP blocks follow the MoE pattern of their index, as in hf_param_specs.
  L.is_moe = c.is_moe_layer(index);
  if (!L.is_moe) {
    L.mlp = mlp(p + ".mlp");
    return L;
  }
  L.router = linear(p + ".mlp.gate.weight");
  auto bias = buffers_.find(p + ".mlp.gate.e_score_correction_bias");
  if (bias != buffers_.end()) L.bias = &bias->second;
  for (int64_t e = 0; e < c.n_routed_experts; ++e) L.experts.push_back(mlp(p + ".mlp.experts." + std::to_string(e)));
  L.has_shared = c.n_shared_experts > 0;
  if (L.has_shared) L.shared = mlp(p + ".mlp.shared_experts");
  return L;
}

void TrainModel::init_random(uint64_t seed) {
  const double out_scale = 1.0 / std::sqrt(2.0 * double(std::max<int64_t>(1, config_.num_hidden_layers)));
  for (const ParamEntry& e : table_) {
    float* p = &params_[e.offset];
    // One generator per tensor, seeded from the name: adding a tensor leaves the others unchanged.
    std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(std::hash<std::string>{}(e.name))};
    std::mt19937_64 rng(seq);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto fill_normal = [&](double stddev) {
      for (int64_t i = 0; i < e.numel; ++i) p[i] = float(stddev) * normal(rng);
    };
    auto ends_with = [&](const char* s) {
      const size_t n = std::strlen(s);
      return e.name.size() >= n && e.name.compare(e.name.size() - n, n, s) == 0;
    };
    switch (e.role) {
      case ParamRole::Norm: case ParamRole::HyperScale: std::fill(p, p + e.numel, 1.0f); break;
      case ParamRole::HyperBase: case ParamRole::Bias: std::fill(p, p + e.numel, 0.0f); break;
      case ParamRole::Embedding: case ParamRole::Router: case ParamRole::Hyper: fill_normal(0.02); break;
      case ParamRole::Linear:
        fill_normal(ends_with("o_proj.weight") || ends_with("down_proj.weight") || ends_with("eh_proj.weight") ? 0.02 * out_scale : 0.02);
        break;
      case ParamRole::TokenTable: break;  // V4 only; the constructor refuses V4 configs
    }
  }
  for (auto& [name, b] : buffers_) std::fill(b.begin(), b.end(), 0.0f);
}

std::unique_ptr<Model> inference_model(const TrainModel& m, ThreadPool& pool) {
  std::vector<TensorRef> refs;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const float* data, int64_t numel) {
    refs.push_back({name, DType::F32, std::move(shape), reinterpret_cast<const uint8_t*>(data), size_t(numel) * 4, "(in memory)"});
  };
  for (const ParamEntry& e : m.table()) add(e.name, e.shape, &m.params()[e.offset], e.numel);
  for (const auto& [name, b] : m.buffers()) add(name, {int64_t(b.size())}, b.data(), int64_t(b.size()));
  size_t bytes = 0;
  for (const TensorRef& r : refs) bytes += r.nbytes;
  return Model::from_tensors(m.config(), TensorSet::from_refs("(training weights)", std::move(refs), nullptr, bytes, true),
                             pool);
}

void TrainModel::load_weights(const std::string& dir) {
  // A checkpoint written in bf16 keeps its float32 master weights in master/ (exact resume).
  const std::string master = dir + "/master";
  auto tensors = TensorSet::open(std::filesystem::exists(master + "/model.safetensors") ? master : dir);
  auto copy = [&](const std::string& name, float* dst, int64_t numel, const std::vector<int64_t>& shape) {
    const TensorRef& t = tensors->get(name);
    if (t.shape != shape)
      fail(t.file, ": tensor '", name, "' has shape ", shape_str(t.shape), ", the config implies ", shape_str(shape));
    for (int64_t i = 0; i < numel; ++i) dst[i] = as_f32(t, i);
  };
  for (const ParamEntry& e : table_) copy(e.name, &params_[e.offset], e.numel, e.shape);
  for (auto& [name, b] : buffers_) copy(name, b.data(), int64_t(b.size()), {int64_t(b.size())});
}

void TrainModel::zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

double TrainModel::update_router_bias(float gamma) {
  double maxvio = 0;
  size_t slot = 0;
  auto update = [&](const LayerP& L) {
    if (!L.is_moe) return;
    std::vector<int64_t>& load = expert_load_[slot++];
    int64_t total = 0, mx = 0;
    for (int64_t v : load) total += v, mx = std::max(mx, v);
    if (total == 0) return;
    const double mean = double(total) / double(load.size());
    maxvio += double(mx) / mean - 1.0;
    if (L.bias && gamma != 0)
      for (size_t e = 0; e < load.size(); ++e) {
        const double diff = mean - double(load[e]);
        (*L.bias)[e] += gamma * float((diff > 0) - (diff < 0));
      }
    std::fill(load.begin(), load.end(), 0);
  };
  for (const LayerP& L : layers_) update(L);
  for (const MtpP& m : mtp_) update(m.block);
  return slot ? maxvio / double(slot) : 0.0;
}

// --- forward / backward --------------------------------------------------------------------

void TrainModel::stack_forward(const std::vector<const LayerP*>& layers, int64_t B, int64_t S, const float* x0,
                               StackActs& a, size_t first_load_slot) {
  const int64_t N = B * S, nD = std::max<int64_t>(1, config_.hc_mult) * config_.hidden_size;
  a.B = B;
  a.S = S;
  a.layers.resize(layers.size());
  // Each layer writes its output straight into the next layer's saved input (no copies).
  if (layers.empty()) a.x_final.assign(x0, x0 + N * nD);
  else a.layers[0].x_in.assign(x0, x0 + N * nD);
  size_t slot = first_load_slot;
  for (size_t l = 0; l < layers.size(); ++l) {
    std::vector<int64_t>* load = layers[l]->is_moe ? &expert_load_[slot++] : nullptr;
    Vec& out = l + 1 < layers.size() ? a.layers[l + 1].x_in : a.x_final;
    out.resize(static_cast<size_t>(N * nD));
    layer_forward(*layers[l], B, S, a.layers[l], out.data(), load);
    if (layers[l]->is_moe) balance_loss_ += layer_balance_loss(config_, a.layers[l], B, S);
  }
}

void TrainModel::stack_backward(const std::vector<const LayerP*>& layers, int64_t B, int64_t S, StackActs& a, float* dx,
                                float balance_weight) {
  const int64_t N = B * S, nD = std::max<int64_t>(1, config_.hc_mult) * config_.hidden_size;
  Vec other(static_cast<size_t>(N * nD));
  float *grad = dx, *spare = other.data();  // ping-pong: each layer writes its input gradient to the spare
  for (size_t l = layers.size(); l-- > 0;) {
    layer_backward(*layers[l], B, S, a.layers[l], grad, spare, balance_weight);
    std::swap(grad, spare);
  }
  if (grad != dx) std::memcpy(dx, grad, other.size() * 4);
}

namespace {

struct HeadCtx {
  const ModelConfig& c;
  ThreadPool& pool;
  const HyperP& hc;
  const VecP& norm;
  const LinearP& lm_head;
};

// Streams [N, n·D] -> hidden [N, D] (hc_head collapse, final norm); then logp of the rows' targets.
void head_forward(const HeadCtx& h, const Vec& x, int64_t N, HeadActs& a, Vec& logp_rows) {
  const ModelConfig& c = h.c;
  const int64_t D = c.hidden_size, n = std::max<int64_t>(1, c.hc_mult);
  if (h.hc.empty()) {
    a.hfin.assign(x.begin(), x.begin() + N * D);
  } else {
    const HyperDims d{n, float(c.hc_eps), int(c.hc_sinkhorn_iters), true};
    SiteActs& s = a.site;
    s.xn.resize(static_cast<size_t>(N * n * D));
    s.inv.resize(static_cast<size_t>(N));
    rmsnorm_forward(x.data(), nullptr, N, n * D, float(c.rms_norm_eps), s.xn.data(), s.inv.data(), h.pool);
    s.mix.resize(static_cast<size_t>(N * n));
    linear_forward(h.hc.fn.w, n, n * D, s.xn.data(), N, s.mix.data(), h.pool);
    s.pre.resize(static_cast<size_t>(N * n));
    a.hfin.assign(static_cast<size_t>(N * D), 0.0f);
    for (int64_t t = 0; t < N; ++t) {
      hc_weights_forward(d, &s.mix[size_t(t * n)], h.hc.base.w, h.hc.scale.w, &s.pre[size_t(t * n)], nullptr, nullptr);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t e = 0; e < D; ++e) a.hfin[size_t(t * D + e)] += s.pre[size_t(t * n + i)] * x[size_t((t * n + i) * D + e)];
    }
  }
  a.hidden.resize(static_cast<size_t>(N * D));
  a.inv.resize(static_cast<size_t>(N));
  rmsnorm_forward(a.hfin.data(), h.norm.w, N, D, float(c.rms_norm_eps), a.hidden.data(), a.inv.data(), h.pool);
  const int64_t R = int64_t(a.rows.size()), V = h.lm_head.out;
  Vec rows(static_cast<size_t>(R * D));
  for (int64_t r = 0; r < R; ++r) std::memcpy(&rows[size_t(r * D)], &a.hidden[size_t(a.rows[size_t(r)] * D)], size_t(D) * 4);
  a.probs.resize(static_cast<size_t>(R * V));
  linear_forward(h.lm_head.w, V, D, rows.data(), R, a.probs.data(), h.pool);
  logp_rows.resize(static_cast<size_t>(R));
  log_softmax_target(a.probs.data(), a.target.data(), R, V, logp_rows.data(), h.pool);
}

// dlogp [R] (+ dhidden_extra [N, D], gradient reaching the hidden states from elsewhere) -> dx [N, n·D].
void head_backward(const HeadCtx& h, const Vec& x, int64_t N, const HeadActs& a, const Vec& dlogp_rows,
                   const Vec& dhidden_extra, Vec& dx) {
  const ModelConfig& c = h.c;
  const int64_t D = c.hidden_size, n = std::max<int64_t>(1, c.hc_mult);
  const int64_t R = int64_t(a.rows.size()), V = h.lm_head.out;
  Vec dlogits(static_cast<size_t>(R * V)), rows(static_cast<size_t>(R * D)), drows(static_cast<size_t>(R * D), 0.0f);
  log_softmax_target_backward(a.probs.data(), a.target.data(), dlogp_rows.data(), R, V, dlogits.data(), h.pool);
  for (int64_t r = 0; r < R; ++r) std::memcpy(&rows[size_t(r * D)], &a.hidden[size_t(a.rows[size_t(r)] * D)], size_t(D) * 4);
  linear_backward(h.lm_head.w, V, D, rows.data(), dlogits.data(), R, drows.data(), h.lm_head.g, h.pool);
  Vec dhidden = dhidden_extra.empty() ? Vec(static_cast<size_t>(N * D), 0.0f) : dhidden_extra;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t e = 0; e < D; ++e) dhidden[size_t(a.rows[size_t(r)] * D + e)] += drows[size_t(r * D + e)];
  Vec dhfin(static_cast<size_t>(N * D), 0.0f);
  rmsnorm_backward(a.hfin.data(), h.norm.w, a.inv.data(), dhidden.data(), N, D, dhfin.data(), h.norm.g, h.pool);
  dx.assign(static_cast<size_t>(N * n * D), 0.0f);
  if (h.hc.empty()) {
    std::memcpy(dx.data(), dhfin.data(), size_t(N * D) * 4);
    return;
  }
  const HyperDims d{n, float(c.hc_eps), int(c.hc_sinkhorn_iters), true};
  const SiteActs& s = a.site;
  Vec da(static_cast<size_t>(N * n)), dpre(static_cast<size_t>(n));
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t i = 0; i < n; ++i) {
      float acc = 0;
      for (int64_t e = 0; e < D; ++e) {
        acc += dhfin[size_t(t * D + e)] * x[size_t((t * n + i) * D + e)];
        dx[size_t((t * n + i) * D + e)] += s.pre[size_t(t * n + i)] * dhfin[size_t(t * D + e)];
      }
      dpre[size_t(i)] = acc;
    }
    hc_weights_backward(d, &s.mix[size_t(t * n)], h.hc.base.w, h.hc.scale.w, dpre.data(), nullptr, nullptr,
                        &da[size_t(t * n)]);
  }
  Vec dmix(static_cast<size_t>(N * n)), dxn(static_cast<size_t>(N * n * D), 0.0f);
  hc_reduce_grads(d, s.mix.data(), da.data(), h.hc.scale.w, N, dmix.data(), h.hc.base.g, h.hc.scale.g);
  linear_backward(h.hc.fn.w, n, n * D, s.xn.data(), dmix.data(), N, dxn.data(), h.hc.fn.g, h.pool);
  rmsnorm_backward(x.data(), nullptr, s.inv.data(), dxn.data(), N, n * D, dx.data(), nullptr, h.pool);
}

}  // namespace

void TrainModel::forward(const TrainBatch& batch, Vec& logp, std::vector<Vec>& mtp_logp) {
  const ModelConfig& c = config_;
  const int64_t B = batch.B, S = batch.T, N = B * S, D = c.hidden_size, n = std::max<int64_t>(1, c.hc_mult);
  WHALE_CHECK(B > 0 && S > 1 && int64_t(batch.tokens.size()) == N && int64_t(batch.weight.size()) == N,
              "training batch: tokens and weights must both hold B·T values with T > 1");
  for (int32_t t : batch.tokens)
    WHALE_CHECK(t >= 0 && t < c.vocab_size, "training batch: token id ", t, " is out of range (vocab_size ", c.vocab_size, ")");
  if (!saved_) saved_ = std::make_unique<Saved>();
  Saved& sv = *saved_;
  sv.batch = batch;
  balance_loss_ = 0;

  Vec x0(static_cast<size_t>(N * n * D));
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(&x0[size_t((t * n + i) * D)], embed_.w + int64_t(batch.tokens[size_t(t)]) * D, size_t(D) * 4);
  std::vector<const LayerP*> main_layers;
  for (const LayerP& L : layers_) main_layers.push_back(&L);
  stack_forward(main_layers, B, S, x0.data(), sv.main, 0);

  const HeadCtx head{c, pool_, hc_head_, norm_, lm_head_};
  HeadActs& ha = sv.main.head;
  ha.rows.clear();
  ha.target.clear();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < S; ++t)
      if (batch.weight[size_t(b * S + t + 1)] != 0) {
        ha.rows.push_back(b * S + t);
        ha.target.push_back(batch.tokens[size_t(b * S + t + 1)]);
      }
  Vec rows_logp;
  head_forward(head, sv.main.x_final, N, ha, rows_logp);
  logp.assign(static_cast<size_t>(N), 0.0f);
  for (size_t r = 0; r < ha.rows.size(); ++r) logp[size_t(ha.rows[r] + 1)] = rows_logp[r];

  // MTP depth k: position t of sequence b (t < S-1-k) sees hidden t of the previous depth and
  // token t+1+k, and predicts token t+2+k.
  size_t load_slot = 0;
  for (const LayerP& L : layers_) load_slot += L.is_moe;
  sv.mtp.resize(mtp_.size());
  mtp_logp.assign(mtp_.size(), Vec(static_cast<size_t>(N), 0.0f));
  const Vec* prev_hidden = &ha.hidden;
  int64_t prev_S = S;
  for (size_t k = 0; k < mtp_.size(); ++k) {
    const MtpP& m = mtp_[k];
    MtpActs& ma = sv.mtp[k];
    const int64_t Sk = S - 1 - int64_t(k), M = B * Sk;
    ma.S = Sk;
    if (Sk < 1) continue;
    ma.e.resize(static_cast<size_t>(M * D));
    Vec h(static_cast<size_t>(M * D));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Sk; ++t) {
        std::memcpy(&ma.e[size_t((b * Sk + t) * D)], embed_.w + int64_t(batch.tokens[size_t(b * S + t + 1 + int64_t(k))]) * D, size_t(D) * 4);
        std::memcpy(&h[size_t((b * Sk + t) * D)], &(*prev_hidden)[size_t((b * prev_S + t) * D)], size_t(D) * 4);
      }
    ma.en.resize(static_cast<size_t>(M * D));
    ma.e_inv.resize(static_cast<size_t>(M));
    ma.hn.resize(static_cast<size_t>(M * D));
    ma.h_inv.resize(static_cast<size_t>(M));
    rmsnorm_forward(ma.e.data(), m.enorm.w, M, D, float(c.rms_norm_eps), ma.en.data(), ma.e_inv.data(), pool_);
    rmsnorm_forward(h.data(), m.hnorm.w, M, D, float(c.rms_norm_eps), ma.hn.data(), ma.h_inv.data(), pool_);
    ma.cat.resize(static_cast<size_t>(M * 2 * D));
    for (int64_t t = 0; t < M; ++t) {
      std::memcpy(&ma.cat[size_t(t * 2 * D)], &ma.en[size_t(t * D)], size_t(D) * 4);
      std::memcpy(&ma.cat[size_t(t * 2 * D + D)], &ma.hn[size_t(t * D)], size_t(D) * 4);
    }
    Vec z(static_cast<size_t>(M * D));
    linear_forward(m.eh_proj.w, D, 2 * D, ma.cat.data(), M, z.data(), pool_);
    ma.x0.resize(static_cast<size_t>(M * n * D));
    for (int64_t t = 0; t < M; ++t)
      for (int64_t i = 0; i < n; ++i) std::memcpy(&ma.x0[size_t((t * n + i) * D)], &z[size_t(t * D)], size_t(D) * 4);
    stack_forward({&m.block}, B, Sk, ma.x0.data(), ma.stack, load_slot);
    load_slot += m.block.is_moe;

    HeadActs& mh = ma.stack.head;
    mh.rows.clear();
    mh.target.clear();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Sk; ++t) {
        const int64_t tgt = t + 2 + int64_t(k);
        if (tgt < S && batch.weight[size_t(b * S + tgt)] != 0) {
          mh.rows.push_back(b * Sk + t);
          mh.target.push_back(batch.tokens[size_t(b * S + tgt)]);
        }
      }
    const HeadCtx mhead{c, pool_, m.hc_head, m.norm, lm_head_};
    head_forward(mhead, ma.stack.x_final, M, mh, rows_logp);
    for (size_t r = 0; r < mh.rows.size(); ++r) {
      const int64_t b = mh.rows[r] / Sk, t = mh.rows[r] % Sk;
      mtp_logp[k][size_t(b * S + t + 2 + int64_t(k))] = rows_logp[r];
    }
    prev_hidden = &mh.hidden;
    prev_S = Sk;
  }
}

void TrainModel::backward(const Vec& dlogp, const std::vector<Vec>& dmtp, float balance_weight) {
  WHALE_CHECK(saved_, "backward() without a forward()");
  Saved& sv = *saved_;
  const ModelConfig& c = config_;
  const int64_t B = sv.batch.B, S = sv.batch.T, N = B * S, D = c.hidden_size, n = std::max<int64_t>(1, c.hc_mult);
  const float eps = float(c.rms_norm_eps);

  // MTP depths, deepest first; each passes a gradient to the hidden states of the depth before.
  Vec dprev_hidden;  // [B·S_{k-1}, D] gradient for the previous depth's hidden states
  for (size_t k = mtp_.size(); k-- > 0;) {
    const MtpP& m = mtp_[k];
    MtpActs& ma = sv.mtp[k];
    const int64_t Sk = ma.S, M = B * Sk;
    if (Sk < 1) continue;
    HeadActs& mh = ma.stack.head;
    Vec drows(mh.rows.size(), 0.0f);
    const bool has_grad = k < dmtp.size() && !dmtp[k].empty();
    for (size_t r = 0; r < mh.rows.size() && has_grad; ++r) {
      const int64_t b = mh.rows[r] / Sk, t = mh.rows[r] % Sk;
      drows[r] = dmtp[k][size_t(b * S + t + 2 + int64_t(k))];
    }
    Vec dx;
    const HeadCtx mhead{c, pool_, m.hc_head, m.norm, lm_head_};
    head_backward(mhead, ma.stack.x_final, M, mh, drows, dprev_hidden, dx);
    stack_backward({&m.block}, B, Sk, ma.stack, dx.data(), balance_weight);
    Vec dz(static_cast<size_t>(M * D), 0.0f), dcat(static_cast<size_t>(M * 2 * D), 0.0f);
    for (int64_t t = 0; t < M; ++t)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t e = 0; e < D; ++e) dz[size_t(t * D + e)] += dx[size_t((t * n + i) * D + e)];
    linear_backward(m.eh_proj.w, D, 2 * D, ma.cat.data(), dz.data(), M, dcat.data(), m.eh_proj.g, pool_);
    Vec den(static_cast<size_t>(M * D)), dhn(static_cast<size_t>(M * D)), de(static_cast<size_t>(M * D), 0.0f), dh(static_cast<size_t>(M * D), 0.0f);
    for (int64_t t = 0; t < M; ++t) {
      std::memcpy(&den[size_t(t * D)], &dcat[size_t(t * 2 * D)], size_t(D) * 4);
      std::memcpy(&dhn[size_t(t * D)], &dcat[size_t(t * 2 * D + D)], size_t(D) * 4);
    }
    rmsnorm_backward(ma.e.data(), m.enorm.w, ma.e_inv.data(), den.data(), M, D, de.data(), m.enorm.g, pool_);
    const Vec& prev_hidden = k == 0 ? sv.main.head.hidden : sv.mtp[k - 1].stack.head.hidden;
    const int64_t prev_S = k == 0 ? S : sv.mtp[k - 1].S;
    Vec h(static_cast<size_t>(M * D));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Sk; ++t)
        std::memcpy(&h[size_t((b * Sk + t) * D)], &prev_hidden[size_t((b * prev_S + t) * D)], size_t(D) * 4);
    rmsnorm_backward(h.data(), m.hnorm.w, ma.h_inv.data(), dhn.data(), M, D, dh.data(), m.hnorm.g, pool_);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Sk; ++t) {
        const int32_t tok = sv.batch.tokens[size_t(b * S + t + 1 + int64_t(k))];
        for (int64_t e = 0; e < D; ++e) embed_.g[int64_t(tok) * D + e] += de[size_t((b * Sk + t) * D + e)];
      }
    dprev_hidden.assign(static_cast<size_t>(B * prev_S * D), 0.0f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Sk; ++t)
        std::memcpy(&dprev_hidden[size_t((b * prev_S + t) * D)], &dh[size_t((b * Sk + t) * D)], size_t(D) * 4);
  }
  (void)eps;

  HeadActs& ha = sv.main.head;
  Vec drows(ha.rows.size());
  for (size_t r = 0; r < ha.rows.size(); ++r) drows[r] = dlogp[size_t(ha.rows[r] + 1)];
  Vec dx;
  const HeadCtx head{c, pool_, hc_head_, norm_, lm_head_};
  head_backward(head, sv.main.x_final, N, ha, drows, dprev_hidden, dx);
  std::vector<const LayerP*> main_layers;
  for (const LayerP& L : layers_) main_layers.push_back(&L);
  stack_backward(main_layers, B, S, sv.main, dx.data(), balance_weight);
  for (int64_t t = 0; t < N; ++t) {
    float* g = embed_.g + int64_t(sv.batch.tokens[size_t(t)]) * D;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t e = 0; e < D; ++e) g[e] += dx[size_t((t * n + i) * D + e)];
  }
}

void write_model_files(const TrainModel& m, const std::string& config_json, const std::string& dir, bool bf16,
                       const std::map<std::string, std::string>& extra_files) {
  namespace fs = std::filesystem;
  std::vector<TensorToWrite> tensors;
  const std::vector<float>& params = m.params();
  for (const ParamEntry& e : m.table()) {
    std::vector<float> v(params.begin() + long(e.offset), params.begin() + long(e.offset + size_t(e.numel)));
    const bool keep_f32 = e.role == ParamRole::Hyper || e.role == ParamRole::HyperBase || e.role == ParamRole::HyperScale;
    tensors.push_back(bf16 && !keep_f32 ? tensor_bf16(e.name, e.shape, v) : tensor_f32(e.name, e.shape, v));
  }
  for (const auto& [name, b] : m.buffers()) tensors.push_back(tensor_f32(name, {int64_t(b.size())}, b));
  const fs::path out(dir);
  std::error_code ec;
  if (!fs::create_directories(out, ec) && ec) fail(dir, ": cannot create directory: ", ec.message());
  write_safetensors((out / "model.safetensors").string(), tensors);
  auto write_text = [&](const std::string& name, const std::string& text) {
    const fs::path p = out / name;
    fs::create_directories(p.parent_path(), ec);
    write_file_synced(p.string(), text);
  };
  write_text("config.json", config_json);
  for (const auto& [name, text] : extra_files) write_text(name, text);
}

void save_model(const TrainModel& m, const std::string& config_json, const std::string& dir, bool bf16,
                const std::map<std::string, std::string>& extra_files) {
  namespace fs = std::filesystem;
  // A complete directory appears under its final name or not at all: written beside it,
  // then swapped in, so a kill at any moment leaves the previous one readable.
  const fs::path final_dir(dir), tmp = final_dir.string() + ".tmp", old = final_dir.string() + ".old";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  write_model_files(m, config_json, tmp.string(), bf16, extra_files);
  fs::remove_all(old, ec);
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(tmp, final_dir);
  fs::remove_all(old, ec);
}

}  // namespace whale::train
