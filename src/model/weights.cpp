#include "model/weights.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace whale {

namespace {

class Binder {
 public:
  Binder(const TensorSet& t, const ModelConfig& c, ModelWeights& w) : tensors_(t), config_(c), out_(w) {}

  // A linear weight [rows, cols]; FP8 weights bring their `weight_scale_inv` tiles.
  Weight matrix(const std::string& name, int64_t rows, int64_t cols) {
    const TensorRef& t = tensors_.get(name);
    if (t.dtype == DType::I8 && t.shape == std::vector<int64_t>{rows, cols / 2} && cols % 32 == 0) return fp4(t, rows, cols);
    expect_shape(t, {rows, cols});
    Weight w;
    w.dtype = t.dtype;
    w.rows = rows;
    w.cols = cols;
    switch (t.dtype) {
      case DType::F32: case DType::F16: case DType::BF16: case DType::F8_E4M3: break;
      default:
        if (!is_block_quantized(t.dtype)) fail(t.file, ": tensor '", name, "' has unsupported dtype ", dtype_name(t.dtype));
        if (cols % dtype_block_elems(t.dtype) != 0)
          fail(t.file, ": tensor '", name, "' has ", cols, " columns, not a multiple of the ", dtype_name(t.dtype),
               " block (", dtype_block_elems(t.dtype), ")");
    }
    w.data = aligned(t);
    if (t.dtype == DType::F8_E4M3) {
      w.block_rows = config_.fp8_block_rows;
      w.block_cols = config_.fp8_block_cols;
      const int64_t sr = (rows + w.block_rows - 1) / w.block_rows;
      w.scale_cols = (cols + w.block_cols - 1) / w.block_cols;
      // V3-style `<name>_scale_inv` (F32), or V4-style `<module>.scale` (F8_E8M0).
      const bool has_suffix = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
      std::string scale_name = has_suffix ? name + "_scale_inv" : name + ".weight_scale_inv";
      const TensorRef* s = tensors_.find(scale_name);
      if (!s && has_suffix) s = tensors_.find(name.substr(0, name.size() - 7) + ".scale");
      if (!s) fail(t.file, ": FP8 tensor '", name, "' has no '", scale_name, "' (or '.scale')");
      expect_shape(*s, {sr, w.scale_cols});
      w.scale = floats(*s);
    }
    out_.weight_bytes += w.bytes();
    return w;
  }

  // DeepSeek-V4's FP4 experts: I8 [rows, cols/2], element 2c in the low nibble of byte c and
  // 2c+1 in the high one (e2m1), with an F8_E8M0 `.scale` [rows, cols/32]. Used as stored (the
  // kernels read e2m1 directly); only the scales become float32.
  Weight fp4(const TensorRef& t, int64_t rows, int64_t cols) {
    const std::string& name = t.name;
    const std::string scale_name = name.substr(0, name.size() - (name.ends_with(".weight") ? 7 : 0)) + ".scale";
    const TensorRef* s = tensors_.find(scale_name);
    if (!s) fail(t.file, ": FP4 tensor '", name, "' has no '", scale_name, "'");
    expect_shape(*s, {rows, cols / 32});
    if (s->dtype != DType::E8M0) fail(s->file, ": FP4 scale '", scale_name, "' has dtype ", dtype_name(s->dtype), ", expected F8_E8M0");
    Weight w;
    w.dtype = DType::F4_E2M1;
    w.rows = rows;
    w.cols = cols;
    w.data = t.data;
    w.block_rows = 1;
    w.block_cols = 32;
    w.scale_cols = cols / 32;
    w.scale = floats(*s);
    out_.weight_bytes += w.bytes();
    return w;
  }

  std::vector<float> vector(const std::string& name, int64_t n) {
    const TensorRef& t = tensors_.get(name);
    expect_shape(t, {n});
    return to_f32(t);
  }

  float scalar(const std::string& name) { return vector(name, 1)[0]; }

  HyperConnectionWeights hyper(const std::string& prefix, int64_t n, int64_t hidden) {
    HyperConnectionWeights h;
    h.fn = matrix(prefix + "_fn", (2 + n) * n, n * hidden);
    h.base = vector(prefix + "_base", (2 + n) * n);
    h.scale = vector(prefix + "_scale", 3);
    return h;
  }

  HyperHeadWeights hyper_head(const std::string& prefix, int64_t n, int64_t hidden) {
    HyperHeadWeights h;
    h.fn = matrix(prefix + "_fn", n, n * hidden);
    h.base = vector(prefix + "_base", n);
    h.scale = scalar(prefix + "_scale");
    return h;
  }

  // One decoder layer: MLA, then a dense or MoE feed-forward, with mHC sites if configured.
  LayerWeights layer(const std::string& p, int64_t index) {
    const ModelConfig& c = config_;
    const int64_t D = c.hidden_size, H = c.num_attention_heads;
    LayerWeights L;
    L.input_layernorm = vector(p + ".input_layernorm.weight", D);
    L.post_attention_layernorm = vector(p + ".post_attention_layernorm.weight", D);

    AttentionWeights& A = L.attn;
    const std::string a = p + ".self_attn";
    if (c.q_lora_rank > 0) {
      A.q_a_proj = matrix(a + ".q_a_proj.weight", c.q_lora_rank, D);
      A.q_a_layernorm = vector(a + ".q_a_layernorm.weight", c.q_lora_rank);
      A.q_b_proj = matrix(a + ".q_b_proj.weight", H * c.qk_head_dim(), c.q_lora_rank);
    } else {
      A.q_proj = matrix(a + ".q_proj.weight", H * c.qk_head_dim(), D);
    }
    A.kv_a_proj_with_mqa = matrix(a + ".kv_a_proj_with_mqa.weight", c.kv_lora_rank + c.qk_rope_head_dim, D);
    A.kv_a_layernorm = vector(a + ".kv_a_layernorm.weight", c.kv_lora_rank);
    if (tensors_.find(a + ".k_b_proj.weight") && !tensors_.find(a + ".kv_b_proj.weight")) {
      // llama.cpp's split layout: per head W_UKᵀ [kv_lora, nope] and W_UV [v, kv_lora].
      A.k_b_proj = matrix(a + ".k_b_proj.weight", H * c.kv_lora_rank, c.qk_nope_head_dim);
      A.v_b_proj = matrix(a + ".v_b_proj.weight", H * c.v_head_dim, c.kv_lora_rank);
    } else {
      A.kv_b_proj = matrix(a + ".kv_b_proj.weight", H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    }
    A.o_proj = matrix(a + ".o_proj.weight", D, H * c.v_head_dim);
    if (c.sparse_attention()) {
      IndexerWeights& I = A.indexer;
      const std::string x = a + ".indexer";
      I.wq_b = matrix(x + ".wq_b.weight", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
      I.wk = matrix(x + ".wk.weight", c.index_head_dim, D);
      I.k_norm_weight = vector(x + ".k_norm.weight", c.index_head_dim);
      I.k_norm_bias = vector(x + ".k_norm.bias", c.index_head_dim);
      I.weights_proj = matrix(x + ".weights_proj.weight", c.index_n_heads, D);
    }

    if (c.hyper_connections()) {
      L.hc_attn = hyper(p + ".hc_attn", c.hc_mult, D);
      L.hc_ffn = hyper(p + ".hc_ffn", c.hc_mult, D);
    }
    L.is_moe = c.is_moe_layer(index);
    if (!L.is_moe) {
      L.mlp = mlp(p + ".mlp", D, c.intermediate_size);
      return L;
    }
    MoEWeights& M = L.moe;
    M.gate = matrix(p + ".mlp.gate.weight", c.n_routed_experts, D);
    const std::string bias = p + ".mlp.gate.e_score_correction_bias";
    if (tensors_.find(bias)) M.e_score_correction_bias = vector(bias, c.n_routed_experts);
    else if (c.topk_method == TopkMethod::NoauxTc)
      fail(tensors_.root(), ": missing tensor '", bias, "' (required by topk_method noaux_tc)");
    M.experts.reserve(size_t(c.n_routed_experts));
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      M.experts.push_back(mlp(p + ".mlp.experts." + std::to_string(e), D, c.moe_intermediate_size));
    if (c.n_shared_experts > 0)
      M.shared_experts = mlp(p + ".mlp.shared_experts", D, c.moe_intermediate_size * c.n_shared_experts);
    return L;
  }

  // DeepSeek-V4 layer N (released names): mHC sites, shared-KV attention with its compressor
  // and indexer per layer type, MoE with hash or score routing.
  LayerWeights v4_layer(const std::string& p, int64_t index) {
    const ModelConfig& c = config_;
    const int64_t D = c.hidden_size, H = c.num_attention_heads, hd = c.head_dim;
    LayerWeights L;
    L.input_layernorm = vector(p + ".attn_norm.weight", D);
    L.post_attention_layernorm = vector(p + ".ffn_norm.weight", D);
    L.hc_attn = hyper(p + ".hc_attn", c.hc_mult, D);
    L.hc_ffn = hyper(p + ".hc_ffn", c.hc_mult, D);
    AttentionWeights& A = L.attn;
    SharedKVWeights& V = A.v4;
    const std::string a = p + ".attn";
    A.q_a_proj = matrix(a + ".wq_a.weight", c.q_lora_rank, D);
    A.q_a_layernorm = vector(a + ".q_norm.weight", c.q_lora_rank);
    A.q_b_proj = matrix(a + ".wq_b.weight", H * hd, c.q_lora_rank);
    V.wkv = matrix(a + ".wkv.weight", hd, D);
    V.kv_norm = vector(a + ".kv_norm.weight", hd);
    V.wo_a = matrix(a + ".wo_a.weight", c.o_groups * c.o_lora_rank, H * hd / c.o_groups);
    V.wo_b = matrix(a + ".wo_b.weight", D, c.o_groups * c.o_lora_rank);
    V.attn_sink = vector(a + ".attn_sink", H);
    const LayerAttention type = c.attention_of(index);
    const int64_t m = c.compress_rate(type);
    if (m > 0) {
      const int64_t coff = type == LayerAttention::CSA ? 2 : 1;
      V.compressor = compressor(a + ".compressor", m, coff, hd);
      if (type == LayerAttention::CSA) {
        V.index_wq_b = matrix(a + ".indexer.wq_b.weight", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
        V.index_weights_proj = matrix(a + ".indexer.weights_proj.weight", c.index_n_heads, D);
        V.index_compressor = compressor(a + ".indexer.compressor", m, 2, c.index_head_dim);
      }
    }
    L.is_moe = true;
    MoEWeights& M = L.moe;
    const std::string f = p + ".ffn";
    M.gate = matrix(f + ".gate.weight", c.n_routed_experts, D);
    if (index < c.num_hash_layers) M.tid2eid = table(f + ".gate.tid2eid", c.vocab_size, c.num_experts_per_tok, c.n_routed_experts);
    else M.e_score_correction_bias = vector(f + ".gate.bias", c.n_routed_experts);
    M.experts.reserve(size_t(c.n_routed_experts));
    for (int64_t e = 0; e < c.n_routed_experts; ++e) M.experts.push_back(v4_mlp(f + ".experts." + std::to_string(e), D, c.moe_intermediate_size));
    if (c.n_shared_experts > 0) M.shared_experts = v4_mlp(f + ".shared_experts", D, c.moe_intermediate_size * c.n_shared_experts);
    return L;
  }

  CompressorWeights compressor(const std::string& p, int64_t m, int64_t coff, int64_t d) {
    CompressorWeights w;
    w.wkv = matrix(p + ".wkv.weight", coff * d, config_.hidden_size);
    w.wgate = matrix(p + ".wgate.weight", coff * d, config_.hidden_size);
    const TensorRef& ape = tensors_.get(p + ".ape");
    expect_shape(ape, {m, coff * d});
    w.ape = to_f32(ape);
    w.norm = vector(p + ".norm.weight", d);
    return w;
  }

  MLPWeights v4_mlp(const std::string& p, int64_t hidden, int64_t inter) {  // w1 gate, w3 up, w2 down
    MLPWeights m;
    m.gate_proj = matrix(p + ".w1.weight", inter, hidden);
    m.up_proj = matrix(p + ".w3.weight", inter, hidden);
    m.down_proj = matrix(p + ".w2.weight", hidden, inter);
    return m;
  }

  // An integer table [rows, cols] whose entries must lie in [0, limit).
  std::vector<int32_t> table(const std::string& name, int64_t rows, int64_t cols, int64_t limit) {
    const TensorRef& t = tensors_.get(name);
    expect_shape(t, {rows, cols});
    if (t.dtype != DType::I64 && t.dtype != DType::I32)
      fail(t.file, ": tensor '", name, "' has dtype ", dtype_name(t.dtype), ", expected I64 or I32");
    std::vector<int32_t> out(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < out.size(); ++i) {
      int64_t v;
      if (t.dtype == DType::I64) std::memcpy(&v, t.data + i * 8, 8);
      else {
        int32_t w;
        std::memcpy(&w, t.data + i * 4, 4);
        v = w;
      }
      if (v < 0 || v >= limit) fail(t.file, ": tensor '", name, "' entry ", i, " is ", v, ", outside [0, ", limit, ")");
      out[i] = int32_t(v);
    }
    return out;
  }

  MLPWeights mlp(const std::string& prefix, int64_t hidden, int64_t inter) {
    MLPWeights m;
    m.gate_proj = matrix(prefix + ".gate_proj.weight", inter, hidden);
    m.up_proj = matrix(prefix + ".up_proj.weight", inter, hidden);
    m.down_proj = matrix(prefix + ".down_proj.weight", hidden, inter);
    return m;
  }

 private:
  void expect_shape(const TensorRef& t, const std::vector<int64_t>& shape) {
    if (t.shape != shape)
      fail(t.file, ": tensor '", t.name, "' has shape ", shape_str(t.shape), ", but the config implies ",
           shape_str(shape));
  }

  std::vector<float> to_f32(const TensorRef& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    switch (t.dtype) {
      case DType::F32: case DType::F16: case DType::BF16: case DType::F64: case DType::E8M0: break;
      default: fail(t.file, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype), ", expected a float type");
    }
    for (size_t i = 0; i < v.size(); ++i) v[i] = load_as_f32(t.dtype, t.data, i);
    return v;
  }

  // f32 tensors are used in place when aligned; anything else is converted once.
  const float* floats(const TensorRef& t) {
    if (t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(t.data) % 4 == 0)
      return reinterpret_cast<const float*>(t.data);
    out_.owned.f32.push_back(to_f32(t));
    return out_.owned.f32.back().data();
  }

  // Kernels read elements through typed pointers; a file whose offsets break alignment
  // gets that one tensor copied rather than misread.
  const uint8_t* aligned(const TensorRef& t) {
    // Blocks start with an f16 (MXFP4's with a byte); plain types align to their size.
    const size_t align = t.dtype == DType::MXFP4 ? 1 : is_block_quantized(t.dtype) ? 2 : dtype_size(t.dtype);
    if (reinterpret_cast<uintptr_t>(t.data) % align == 0) return t.data;
    out_.owned.raw.emplace_back(t.data, t.data + t.nbytes);
    return out_.owned.raw.back().data();
  }

  const TensorSet& tensors_;
  const ModelConfig& config_;
  ModelWeights& out_;
};

}  // namespace

std::unique_ptr<ModelWeights> bind_hf_weights(const TensorSet& tensors, const ModelConfig& c) {
  auto w = std::make_unique<ModelWeights>();
  Binder b(tensors, c, *w);
  const int64_t D = c.hidden_size;
  if (c.shared_kv()) {  // DeepSeek-V4, released names
    w->embed_tokens = b.matrix("embed.weight", c.vocab_size, D);
    w->layers.reserve(size_t(c.num_hidden_layers));
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) w->layers.push_back(b.v4_layer("layers." + std::to_string(l), l));
    w->hc_head = b.hyper_head("hc_head", c.hc_mult, D);
    w->norm = b.vector("norm.weight", D);
    w->lm_head = b.matrix("head.weight", c.vocab_size, D);
    // MTP modules (mtp.k.*): optional, as for V3; a sliding-window block with its own hc_head.
    for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
      const std::string p = "mtp." + std::to_string(k);
      if (!tensors.find(p + ".e_proj.weight")) break;
      if (c.attention_of(c.num_hidden_layers + k) != LayerAttention::Sliding)
        fail(tensors.root(), ": the MTP module ", p, " is configured as ", to_string(c.attention_of(c.num_hidden_layers + k)),
             "; whale runs sliding-window MTP blocks (compress_ratios ends with 0)");
      MtpWeights m;
      m.enorm = b.vector(p + ".enorm.weight", D);
      m.hnorm = b.vector(p + ".hnorm.weight", D);
      m.e_proj = b.matrix(p + ".e_proj.weight", D, D);
      m.h_proj = b.matrix(p + ".h_proj.weight", D, D);
      m.block = b.v4_layer(p, c.num_hidden_layers + k);
      m.hc_head = b.hyper_head(p + ".hc_head", c.hc_mult, D);
      m.shared_head_norm = b.vector(p + ".norm.weight", D);
      m.embed_tokens = w->embed_tokens;
      m.head = w->lm_head;
      w->mtp.push_back(std::move(m));
    }
    return w;
  }

  w->embed_tokens = b.matrix("model.embed_tokens.weight", c.vocab_size, D);
  w->layers.reserve(size_t(c.num_hidden_layers));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) w->layers.push_back(b.layer("model.layers." + std::to_string(l), l));
  if (c.hyper_connections()) w->hc_head = b.hyper_head("model.hc_head", c.hc_mult, D);
  w->norm = b.vector("model.norm.weight", D);
  if (c.tie_word_embeddings && !tensors.find("lm_head.weight")) w->lm_head = w->embed_tokens;
  else w->lm_head = b.matrix("lm_head.weight", c.vocab_size, D);

  // MTP modules are optional: converted checkpoints often drop them. They are bound when
  // present; asking for speculative decoding without them is an error at that point.
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const int64_t index = c.num_hidden_layers + k;
    const std::string p = "model.layers." + std::to_string(index);
    if (!tensors.find(p + ".eh_proj.weight")) break;
    MtpWeights m;
    m.enorm = b.vector(p + ".enorm.weight", D);
    m.hnorm = b.vector(p + ".hnorm.weight", D);
    m.eh_proj = b.matrix(p + ".eh_proj.weight", D, 2 * D);
    m.block = b.layer(p, index);
    if (c.hyper_connections()) m.hc_head = b.hyper_head(p + ".hc_head", c.hc_mult, D);
    m.shared_head_norm = b.vector(p + ".shared_head.norm.weight", D);
    m.embed_tokens = tensors.find(p + ".embed_tokens.weight") ? b.matrix(p + ".embed_tokens.weight", c.vocab_size, D)
                                                              : w->embed_tokens;
    m.head = tensors.find(p + ".shared_head.head.weight") ? b.matrix(p + ".shared_head.head.weight", c.vocab_size, D)
                                                          : w->lm_head;
    w->mtp.push_back(std::move(m));
  }
  return w;
}

}  // namespace whale
