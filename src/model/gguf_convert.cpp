#include "model/gguf_convert.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "formats/gguf.h"
#include "model/hf_config.h"
#include "formats/safetensors.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "model/weights.h"

namespace whale {

using json = nlohmann::json;

GgufFileType parse_gguf_file_type(const std::string& name) {
  if (name == "f32") return GgufFileType::F32;
  if (name == "f16") return GgufFileType::F16;
  if (name == "bf16") return GgufFileType::BF16;
  if (name == "q8_0") return GgufFileType::Q8_0;
  if (name == "q4_0") return GgufFileType::Q4_0;
  if (name == "q4_k_m") return GgufFileType::Q4_K_M;
  if (name == "mxfp4_moe") return GgufFileType::MXFP4_MOE;
  fail("unknown GGUF type '", name, "' (f32, f16, bf16, q8_0, q4_0, q4_k_m, mxfp4_moe)");
}

namespace {

// llama_ftype values written to general.file_type.
uint32_t llama_ftype(GgufFileType t) {
  switch (t) {
    case GgufFileType::F32: return 0;
    case GgufFileType::F16: return 1;
    case GgufFileType::Q8_0: return 7;
    case GgufFileType::Q4_0: return 2;
    case GgufFileType::Q4_K_M: return 15;
    case GgufFileType::BF16: return 32;
    case GgufFileType::MXFP4_MOE: return 38;
  }
  return 0;
}

// One output tensor: its shape (PyTorch order) and how to produce row r as f32.
struct Source {
  std::string name;
  std::vector<int64_t> shape;
  int64_t rows, cols;  // the 2-D view rows are produced in (vectors: 1 row)
  std::function<void(int64_t, float*)> row;
  // For tensors whose rows are not rows of a source (a transpose): all rows × cols at once.
  std::function<void(float*)> whole = {};
  DType dtype = DType::F32;
  // Tensors written as stored bytes, not from f32 rows (integer tables, MXFP4 repacks).
  std::function<void(uint8_t*)> raw = {};
  bool typed = false;  // dtype already fixed (else choose_type's rules pick it: assign_types)
};

// A float vector as a tensor of shape [n], or with `cols`, a [n / cols, cols] table.
Source vector_source(const std::string& name, const std::vector<float>& v, int64_t cols = 0) {
  const std::vector<float>* p = &v;
  const int64_t n = int64_t(v.size()), width = cols > 0 ? cols : n;
  std::vector<int64_t> shape = cols > 0 ? std::vector<int64_t>{n / cols, cols} : std::vector<int64_t>{n};
  return {name, std::move(shape), n / width, width, [p, width](int64_t r, float* o) {
            std::memcpy(o, p->data() + r * width, size_t(width) * 4);
          }};
}

// A weight matrix, its rows dequantized as they are written.
Source matrix_source(const std::string& name, const Weight& m) {
  const Weight* p = &m;
  return {name, {m.rows, m.cols}, m.rows, m.cols, [p](int64_t r, float* o) { dequantize_row(*p, r, o); }};
}

// One projection of every routed expert, stacked [E, out, in] as llama.cpp stores them.
Source experts_source(const std::string& name, const std::vector<MLPWeights>& e, Weight MLPWeights::*which) {
  const std::vector<MLPWeights>* p = &e;
  const int64_t rows = (e[0].*which).rows, cols = (e[0].*which).cols, E = int64_t(e.size());
  return {name, {E, rows, cols}, E * rows, cols,
          [p, which, rows](int64_t r, float* o) { dequantize_row((*p)[size_t(r / rows)].*which, r % rows, o); }};
}

// llama.cpp's Q4_K_M rule for "more bits" layers (llama-quant.cpp use_more_bits).
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// A type for rows of `cols` values where `want`'s blocks do not fit, as llama-quant.cpp's
// tensor_type_fallback picks it (DeepSeek-V2-Lite's 1408-wide ffn_down_exps rows get Q5_0 in
// llama.cpp's Q4_K_M files).
DType fallback(DType want, int64_t cols) {
  if (cols % dtype_block_elems(want) == 0) return want;
  if (cols % 32 == 0) return want == DType::Q4_K ? DType::Q5_0 : DType::Q8_0;
  return DType::F16;
}

DType choose_type(GgufFileType ft, const std::string& name, int64_t layer, int64_t n_ffn_down, bool tied,
                  int64_t cols, bool matrix) {
  // Norms, routers, V3.2's indexer head weights (computed in float32 by DeepSeek) and V4's mHC
  // mixing weights and compressor position biases (stored in float32) stay F32.
  if (!matrix || name.find("_norm.weight") != std::string::npos || name.find("ffn_gate_inp") != std::string::npos ||
      name.find("indexer.proj") != std::string::npos || name.find("hc_") != std::string::npos ||
      name.find("_ape.") != std::string::npos)
    return DType::F32;
  // llama-quant.cpp: in the 4-bit mixes the output matrix (or tied embeddings) gets Q6_K.
  const bool output = name == "output.weight" || (tied && name == "token_embd.weight");
  switch (ft) {
    case GgufFileType::F32: return DType::F32;
    case GgufFileType::F16: return DType::F16;
    case GgufFileType::BF16: return DType::BF16;
    case GgufFileType::Q8_0: return fallback(DType::Q8_0, cols);
    case GgufFileType::Q4_0: return fallback(output ? DType::Q6_K : DType::Q4_0, cols);
    case GgufFileType::Q4_K_M: break;
    case GgufFileType::MXFP4_MOE: fail("choose_type: mxfp4_moe is DeepSeek-V4's layout (v4_sources)");
  }
  if (output) return fallback(DType::Q6_K, cols);
  if (name.find("ffn_down") != std::string::npos && use_more_bits(layer, n_ffn_down)) return fallback(DType::Q6_K, cols);
  return fallback(DType::Q4_K, cols);
}

void encode_row(DType t, const float* x, int64_t n, uint8_t* out) {
  switch (t) {
    case DType::F32: std::memcpy(out, x, size_t(n) * 4); break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    case DType::Q8_0: quantize_q8_0(x, n, reinterpret_cast<BlockQ8_0*>(out)); break;
    case DType::Q4_0: quantize_q4_0(x, n, reinterpret_cast<BlockQ4_0*>(out)); break;
    case DType::Q5_0: quantize_q5_0(x, n, reinterpret_cast<BlockQ5_0*>(out)); break;
    case DType::Q4_K: quantize_q4_k(x, n, reinterpret_cast<BlockQ4_K*>(out)); break;
    case DType::Q6_K: quantize_q6_k(x, n, reinterpret_cast<BlockQ6_K*>(out)); break;
    case DType::MXFP4: quantize_mxfp4(x, n, reinterpret_cast<BlockMXFP4*>(out)); break;
    default: fail("encode_row: unsupported type ", dtype_name(t));
  }
}

void add_tokenizer(const std::string& dir, int64_t vocab_size, GgufWriter& w) {
  const std::string tok_path = dir + "/tokenizer.json";
  if (!file_exists(tok_path))
    fail(dir, ": no tokenizer.json (GGUF files embed the tokenizer; llama.cpp cannot load one without it)");
  json tok = json::parse(read_text_file(tok_path, size_t(512) << 20), nullptr, false);
  if (tok.is_discarded() || !tok.is_object() || !tok.contains("model")) fail(tok_path, ": not a tokenizer.json");
  const json& model = tok["model"];
  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int32_t> types(static_cast<size_t>(vocab_size), 0);
  auto put = [&](int64_t id, const std::string& text, int32_t type) {
    if (id < 0 || id >= vocab_size)
      fail(tok_path, ": token id ", id, " (", text, ") is outside the model's vocab_size ", vocab_size);
    tokens[size_t(id)] = text;
    types[size_t(id)] = type;
  };
  for (auto& [text, id] : model.at("vocab").items()) put(id.get<int64_t>(), text, 1);  // normal
  for (const json& a : tok.value("added_tokens", json::array()))
    put(a.at("id").get<int64_t>(), a.at("content").get<std::string>(), a.value("special", false) ? 3 : 4);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == 0) {  // ids the tokenizer does not use: padding, as llama.cpp's converter writes
      tokens[i] = "[PAD" + std::to_string(i) + "]";
      types[i] = 5;
    }
  std::vector<std::string> merges;
  for (const json& m : model.at("merges"))
    merges.push_back(m.is_string() ? m.get<std::string>() : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());

  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "deepseek-v3");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", merges);

  const std::string cfg_path = dir + "/tokenizer_config.json";
  json cfg = file_exists(cfg_path) ? json::parse(read_text_file(cfg_path), nullptr, false) : json::object();
  if (!cfg.is_object()) fail(cfg_path, ": not a JSON object");
  auto id_of = [&](const char* key) -> int64_t {
    const json& v = cfg.value(key, json());
    const std::string text = v.is_string() ? v.get<std::string>() : v.is_object() ? v.value("content", "") : "";
    for (size_t i = 0; i < tokens.size(); ++i)
      if (!text.empty() && tokens[i] == text) return int64_t(i);
    return -1;
  };
  if (int64_t id = id_of("bos_token"); id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(id));
  if (int64_t id = id_of("eos_token"); id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(id));
  if (int64_t id = id_of("pad_token"); id >= 0) w.set_u32("tokenizer.ggml.padding_token_id", uint32_t(id));
  const json& add_bos = cfg.value("add_bos_token", json());
  w.set_bool("tokenizer.ggml.add_bos_token", add_bos.is_boolean() ? add_bos.get<bool>() : true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  if (cfg.contains("chat_template") && cfg["chat_template"].is_string())
    w.set_string("tokenizer.chat_template", cfg["chat_template"].get<std::string>());
}


// DeepSeek-V4's FP4 experts as ggml MXFP4, byte for byte what llama.cpp's converter writes
// (_pack_mxfp4_blocks): per 32 values the E8M0 scale byte, then values 0-15 in the low nibbles
// and 16-31 in the high ones. Lossless: the scale is a power of two and the values e2m1.
void repack_fp4_as_mxfp4(const Weight& w, uint8_t* out) {
  const int64_t blocks = w.cols / 32;
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* src = w.row(r);
    for (int64_t b = 0; b < blocks; ++b) {
      BlockMXFP4 blk;
      int exp = 0;
      std::frexp(w.scale[r * w.scale_cols + b], &exp);  // scale = 2^(e − 127) = 0.5 · 2^exp
      blk.e = uint8_t(exp - 1 + 127);
      auto code = [&](int j) { return (src[(b * 32 + j) / 2] >> (4 * (j % 2))) & 15; };
      for (int j = 0; j < 16; ++j) blk.qs[j] = uint8_t(code(j) | (code(j + 16) << 4));
      std::memcpy(out + size_t(r * blocks + b) * sizeof(BlockMXFP4), &blk, sizeof(BlockMXFP4));
    }
  }
}

// The YaRN keys both architectures write (deepseek2 adds its log multiplier).
void set_yarn(const std::string& A, const ModelConfig& c, GgufWriter& w) {
  w.set_string(A + "rope.scaling.type", "yarn");
  w.set_f32(A + "rope.scaling.factor", float(c.yarn.factor));
  w.set_u32(A + "rope.scaling.original_context_length", uint32_t(c.yarn.original_max_position_embeddings));
  w.set_f32(A + "rope.scaling.yarn_beta_fast", float(c.yarn.beta_fast));
  w.set_f32(A + "rope.scaling.yarn_beta_slow", float(c.yarn.beta_slow));
}

// llama.cpp's deepseek4 metadata (conversion/deepseek.py, DeepseekV4Model.set_gguf_parameters).
void v4_metadata(const ModelConfig& c, GgufWriter& w) {
  const std::string A = "deepseek4.";
  const int64_t L = c.num_hidden_layers;
  w.set_u32(A + "block_count", uint32_t(L));
  w.set_u32(A + "context_length", uint32_t(c.max_position_embeddings));
  w.set_u32(A + "embedding_length", uint32_t(c.hidden_size));
  w.set_u32(A + "attention.head_count", uint32_t(c.num_attention_heads));
  w.set_u32(A + "attention.head_count_kv", 1);
  if (c.yarn.enabled) set_yarn(A, c, w);
  w.set_f32(A + "rope.freq_base", float(c.rope_theta));
  w.set_f32(A + "attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
  w.set_u32(A + "expert_count", uint32_t(c.n_routed_experts));
  w.set_u32(A + "expert_used_count", uint32_t(c.num_experts_per_tok));
  const uint32_t gating = c.scoring_func == ScoringFunc::SqrtSoftplus ? 4 : c.scoring_func == ScoringFunc::Sigmoid ? 2 : 1;
  w.set_u32(A + "expert_gating_func", gating);
  w.set_u32(A + "attention.key_length", uint32_t(c.head_dim));
  w.set_u32(A + "attention.value_length", uint32_t(c.head_dim));
  w.set_u32(A + "rope.dimension_count", uint32_t(c.qk_rope_head_dim));
  w.set_u32(A + "attention.q_lora_rank", uint32_t(c.q_lora_rank));
  w.set_u32(A + "attention.sliding_window", uint32_t(c.sliding_window));
  w.set_u32(A + "expert_feed_forward_length", uint32_t(c.moe_intermediate_size));
  w.set_u32(A + "expert_shared_count", uint32_t(c.n_shared_experts));
  w.set_f32(A + "expert_weights_scale", float(c.routed_scaling_factor));
  w.set_bool(A + "expert_weights_norm", c.norm_topk_prob);
  w.set_f32_array(A + "swiglu_clamp_exp", std::vector<float>(size_t(L), float(c.swiglu_limit)));
  w.set_f32_array(A + "swiglu_clamp_shexp", std::vector<float>(size_t(L), float(c.swiglu_limit)));
  w.set_u32(A + "attention.indexer.head_count", uint32_t(c.index_n_heads));
  w.set_u32(A + "attention.indexer.key_length", uint32_t(c.index_head_dim));
  w.set_u32(A + "attention.indexer.top_k", uint32_t(c.index_topk));
  w.set_u32(A + "attention.output_group_count", uint32_t(c.o_groups));
  w.set_u32(A + "attention.output_lora_rank", uint32_t(c.o_lora_rank));
  std::vector<int32_t> ratios;  // every layer's, then the MTP block's (as config.json lists them)
  for (LayerAttention a : c.layer_attention) ratios.push_back(int32_t(c.compress_rate(a)));
  w.set_i32_array(A + "attention.compress_ratios", ratios);
  w.set_f32(A + "attention.compress_rope_freq_base", float(c.compress_rope_theta));
  w.set_u32(A + "hyper_connection.count", uint32_t(c.hc_mult));
  w.set_u32(A + "hyper_connection.sinkhorn_iterations", uint32_t(c.hc_sinkhorn_iters));
  w.set_f32(A + "hyper_connection.epsilon", float(c.hc_eps));
  w.set_u32(A + "hash_layer_count", uint32_t(c.num_hash_layers));
  w.set_u32(A + "embedding_length_out", uint32_t(c.hidden_size * c.hc_mult));
}

// DeepSeek-V4's tensors under llama.cpp's deepseek4 names, each with its GGUF type. mxfp4_moe is
// the layout llama.cpp's converter writes from the released FP8/FP4 checkpoints (it has no
// other): FP8 matrices Q8_0 (F16 where rows are not whole blocks), BF16 ones BF16, F32 ones and
// vectors F32, the experts MXFP4. Other types follow deepseek2's rules (choose_type), except that
// FP4 experts are repacked to MXFP4 (lossless, the smallest exact form) under every type but f32:
// an f32 file is whale's float reference, and MXFP4 products quantize the activations to int8.
std::vector<Source> v4_sources(const ModelConfig& c, const ModelWeights& W, const TensorSet& tensors, GgufFileType ft) {
  std::vector<Source> src;
  auto typed = [&](Source& s, DType stored) {
    if (ft != GgufFileType::MXFP4_MOE) return;  // assign_types
    s.typed = true;
    if (s.shape.size() < 2 || stored == DType::F32) s.dtype = DType::F32;
    else if (stored == DType::F8_E4M3) s.dtype = fallback(DType::Q8_0, s.cols);
    else if (stored == DType::BF16 || stored == DType::F16) s.dtype = stored;
    else s.dtype = DType::F32;
  };
  auto mat = [&](const std::string& name, const Weight& m) {
    src.push_back(matrix_source(name, m));
    typed(src.back(), m.dtype);
  };
  auto vec = [&](const std::string& name, const std::vector<float>& v) {
    src.push_back(vector_source(name, v));
    typed(src.back(), DType::F32);
  };
  auto experts = [&](const std::string& name, const std::vector<MLPWeights>& e, Weight MLPWeights::*which) {
    src.push_back(experts_source(name, e, which));
    Source& s = src.back();
    if ((e[0].*which).dtype == DType::F4_E2M1 && ft != GgufFileType::F32) {
      s.dtype = DType::MXFP4;
      s.typed = true;
      const size_t bytes = dtype_row_bytes(DType::MXFP4, s.cols) * size_t((e[0].*which).rows);
      const std::vector<MLPWeights>* p = &e;
      s.raw = [p, which, bytes](uint8_t* out) {
        for (size_t x = 0; x < p->size(); ++x) repack_fp4_as_mxfp4((*p)[x].*which, out + x * bytes);
      };
    } else if (ft == GgufFileType::MXFP4_MOE) {
      s.dtype = fallback(DType::MXFP4, s.cols);
      s.typed = true;
    }
  };
  auto hyper = [&](const std::string& p, const HyperConnectionWeights& h) {
    mat(p + "_fn.weight", h.fn);
    vec(p + "_base.weight", h.base);
    vec(p + "_scale.weight", h.scale);
  };
  auto compressor = [&](const std::string& p, const std::string& source, const CompressorWeights& cw) {
    // The ape table [m, coff·d], typed by its stored dtype.
    const TensorRef& ape = tensors.get(source + ".ape");
    src.push_back(vector_source(p + "_ape.weight", cw.ape, ape.shape[1]));
    typed(src.back(), ape.dtype);
    vec(p + "_norm.weight", cw.norm);
    mat(p + "_gate.weight", cw.wgate);
    mat(p + "_kv.weight", cw.wkv);
  };

  mat("token_embd.weight", W.embed_tokens);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = W.layers[size_t(l)];
    const SharedKVWeights& V = L.attn.v4;
    const std::string p = "blk." + std::to_string(l) + ".", hf = "layers." + std::to_string(l) + ".";
    vec(p + "attn_sinks.weight", V.attn_sink);
    if (!V.compressor.empty()) compressor(p + "attn_compressor", hf + "attn.compressor", V.compressor);
    if (!V.index_compressor.empty()) {
      compressor(p + "indexer_compressor", hf + "attn.indexer.compressor", V.index_compressor);
      mat(p + "indexer.proj.weight", V.index_weights_proj);
      mat(p + "indexer.attn_q_b.weight", V.index_wq_b);
    }
    vec(p + "attn_kv_a_norm.weight", V.kv_norm);
    vec(p + "attn_q_a_norm.weight", L.attn.q_a_layernorm);
    mat(p + "attn_kv.weight", V.wkv);
    mat(p + "attn_output_a.weight", V.wo_a);
    mat(p + "attn_output_b.weight", V.wo_b);
    mat(p + "attn_q_a.weight", L.attn.q_a_proj);
    mat(p + "attn_q_b.weight", L.attn.q_b_proj);
    vec(p + "attn_norm.weight", L.input_layernorm);
    const MoEWeights& M = L.moe;
    if (!M.e_score_correction_bias.empty()) vec(p + "exp_probs_b.bias", M.e_score_correction_bias);
    mat(p + "ffn_gate_inp.weight", M.gate);
    if (!M.tid2eid.empty()) {  // the hash layers' [vocab, top_k] expert table, I32
      const std::vector<int32_t>* t = &M.tid2eid;
      src.push_back({p + "ffn_gate_tid2eid.weight", {c.vocab_size, c.num_experts_per_tok}, c.vocab_size, c.num_experts_per_tok,
                     nullptr});
      src.back().dtype = DType::I32;
      src.back().typed = true;
      src.back().raw = [t](uint8_t* out) { std::memcpy(out, t->data(), t->size() * 4); };
    }
    experts(p + "ffn_gate_exps.weight", M.experts, &MLPWeights::gate_proj);
    experts(p + "ffn_down_exps.weight", M.experts, &MLPWeights::down_proj);
    experts(p + "ffn_up_exps.weight", M.experts, &MLPWeights::up_proj);
    if (c.n_shared_experts > 0) {
      mat(p + "ffn_gate_shexp.weight", M.shared_experts.gate_proj);
      mat(p + "ffn_down_shexp.weight", M.shared_experts.down_proj);
      mat(p + "ffn_up_shexp.weight", M.shared_experts.up_proj);
    }
    vec(p + "ffn_norm.weight", L.post_attention_layernorm);
    hyper(p + "hc_attn", L.hc_attn);
    hyper(p + "hc_ffn", L.hc_ffn);
  }
  vec("output_hc_base.weight", W.hc_head.base);
  mat("output_hc_fn.weight", W.hc_head.fn);
  {
    const float scale = W.hc_head.scale;
    src.push_back({"output_hc_scale.weight", {1}, 1, 1, [scale](int64_t, float* o) { o[0] = scale; }});
    typed(src.back(), DType::F32);
  }
  vec("output_norm.weight", W.norm);
  mat("output.weight", W.lm_head);
  return src;
}
// choose_type for every source whose type is not fixed yet (Q4_K_M counts the ffn_down tensors).
void assign_types(std::vector<Source>& src, GgufFileType ft, bool tied) {
  int64_t n_ffn_down = 0;
  for (const Source& s : src) n_ffn_down += s.name.find("ffn_down") != std::string::npos;
  for (Source& s : src) {
    if (s.typed) continue;
    int64_t layer = 0;
    if (s.name.rfind("blk.", 0) == 0) layer = std::stoll(s.name.substr(4));
    s.dtype = choose_type(ft, s.name, layer, n_ffn_down, tied, s.cols, s.shape.size() >= 2);
  }
}

// Writes every source's rows in its type (the raw ones as they produce themselves), in parallel.
void write_tensors(const GgufWriter& w, const std::string& out, const std::vector<Source>& src, ThreadPool& pool,
                   const std::function<void(size_t, size_t)>& progress) {
  size_t done = 0;
  w.write(out, [&](size_t i, uint8_t* buf) {
    const Source& s = src[i];
    if (s.raw) {
      s.raw(buf);
      if (progress) progress(++done, src.size());
      return;
    }
    const size_t row_bytes = dtype_row_bytes(s.dtype, s.cols);
    std::vector<float> all;
    if (s.whole) {
      all.resize(size_t(s.rows * s.cols));
      s.whole(all.data());
    }
    pool.parallel_for(s.rows, [&](int64_t r0, int64_t r1) {
      std::vector<float> row(size_t(s.cols));
      for (int64_t r = r0; r < r1; ++r) {
        const float* x = all.empty() ? row.data() : &all[size_t(r * s.cols)];
        if (all.empty()) s.row(r, row.data());
        encode_row(s.dtype, x, s.cols, buf + size_t(r) * row_bytes);
      }
    }, 16);
    if (progress) progress(++done, src.size());
  });
}


// llama.cpp's deepseek2 / deepseek32 metadata (keys under `A`, "deepseek2." or "deepseek32.").
void deepseek2_metadata(const std::string& dir, const ModelConfig& c, const std::string& A, GgufWriter& w) {
  w.set_u32(A + "block_count", uint32_t(c.num_hidden_layers));
  w.set_u32(A + "context_length", uint32_t(c.max_position_embeddings));
  w.set_u32(A + "embedding_length", uint32_t(c.hidden_size));
  w.set_u32(A + "feed_forward_length", uint32_t(c.intermediate_size));
  w.set_u32(A + "attention.head_count", uint32_t(c.num_attention_heads));
  w.set_u32(A + "attention.head_count_kv", 1);  // MLA runs as MQA over the latent
  w.set_f32(A + "rope.freq_base", float(c.rope_theta));
  w.set_f32(A + "attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
  w.set_u32(A + "leading_dense_block_count", uint32_t(c.n_routed_experts > 0 ? c.first_k_dense_replace : c.num_hidden_layers));
  w.set_u32(A + "vocab_size", uint32_t(c.vocab_size));
  if (c.q_lora_rank > 0) w.set_u32(A + "attention.q_lora_rank", uint32_t(c.q_lora_rank));
  w.set_u32(A + "attention.kv_lora_rank", uint32_t(c.kv_lora_rank));
  w.set_u32(A + "attention.key_length", uint32_t(c.kv_lora_rank + c.qk_rope_head_dim));
  w.set_u32(A + "attention.value_length", uint32_t(c.kv_lora_rank));
  w.set_u32(A + "attention.key_length_mla", uint32_t(c.qk_head_dim()));
  w.set_u32(A + "attention.value_length_mla", uint32_t(c.v_head_dim));
  w.set_u32(A + "expert_feed_forward_length", uint32_t(c.n_routed_experts > 0 ? c.moe_intermediate_size : c.intermediate_size));
  if (c.n_routed_experts > 0) {
    if (c.moe_layer_freq != 1) fail(dir, ": moe_layer_freq ", c.moe_layer_freq, " has no deepseek2 GGUF equivalent");
    w.set_u32(A + "expert_count", uint32_t(c.n_routed_experts));
    w.set_u32(A + "expert_used_count", uint32_t(c.num_experts_per_tok));
    w.set_u32(A + "expert_group_count", uint32_t(c.n_group));
    w.set_u32(A + "expert_group_used_count", uint32_t(c.topk_group));
    w.set_f32(A + "expert_weights_scale", float(c.routed_scaling_factor));
    if (c.norm_topk_prob) w.set_bool(A + "expert_weights_norm", true);
    // The routing method itself is not stored: readers infer noaux_tc from exp_probs_b and
    // group-limited greedy from expert_group_count > 1 without it.
    w.set_u32(A + "expert_gating_func", c.scoring_func == ScoringFunc::Sigmoid ? 2 : 1);
  }
  w.set_u32(A + "expert_shared_count", uint32_t(c.n_shared_experts));
  w.set_u32(A + "rope.dimension_count", uint32_t(c.qk_rope_head_dim));
  if (c.sparse_attention()) {
    w.set_u32(A + "attention.indexer.head_count", uint32_t(c.index_n_heads));
    w.set_u32(A + "attention.indexer.key_length", uint32_t(c.index_head_dim));
    w.set_u32(A + "attention.indexer.top_k", uint32_t(c.index_topk));
  }
  if (c.yarn.enabled) {
    if (c.yarn.mscale != c.yarn.mscale_all_dim)
      fail(dir, ": rope_scaling mscale != mscale_all_dim cannot be expressed in a deepseek2 GGUF");
    set_yarn(A, c, w);
    w.set_f32(A + "rope.scaling.yarn_log_multiplier", float(0.1 * c.yarn.mscale_all_dim));
  }
}

// deepseek2 / deepseek32 tensors; `tied` says whether the output shares the embedding (then absent).
std::vector<Source> deepseek2_sources(const ModelConfig& c, const ModelWeights& W, bool& tied) {
  // The tensors, in llama.cpp's order and names.
  std::vector<Source> src;
  auto vec = [&](const std::string& name, const std::vector<float>& v) { src.push_back(vector_source(name, v)); };
  auto mat = [&](const std::string& name, const Weight& m) { src.push_back(matrix_source(name, m)); };
  auto experts = [&](const std::string& name, const std::vector<MLPWeights>& e, Weight MLPWeights::*which) {
    src.push_back(experts_source(name, e, which));
  };
  const int64_t H = c.num_attention_heads, R = c.kv_lora_rank, nope = c.qk_nope_head_dim, dv = c.v_head_dim;
  const int64_t kv_row = nope + dv;

  mat("token_embd.weight", W.embed_tokens);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = W.layers[size_t(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    vec(p + "attn_norm.weight", L.input_layernorm);
    const AttentionWeights& a = L.attn;
    if (c.q_lora_rank > 0) {
      mat(p + "attn_q_a.weight", a.q_a_proj);
      vec(p + "attn_q_a_norm.weight", a.q_a_layernorm);
      mat(p + "attn_q_b.weight", a.q_b_proj);
    } else {
      mat(p + "attn_q.weight", a.q_proj);
    }
    mat(p + "attn_kv_a_mqa.weight", a.kv_a_proj_with_mqa);
    vec(p + "attn_kv_a_norm.weight", a.kv_a_layernorm);
    // kv_b_proj [H·(nope+dv), R] split per head into k_b [H, R, nope] (transposed) and v_b [H, dv, R].
    const Weight* kvb = &a.kv_b_proj;
    src.push_back({p + "attn_k_b.weight", {H, R, nope}, H * R, nope, nullptr});
    src.back().whole = [kvb, H, R, nope, kv_row](float* all) {  // one pass over kv_b, transposed per head
      std::vector<float> row(size_t(kvb->cols));
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < nope; ++j) {
          dequantize_row(*kvb, h * kv_row + j, row.data());
          for (int64_t col = 0; col < R; ++col) all[size_t((h * R + col) * nope + j)] = row[size_t(col)];
        }
    };
    src.push_back({p + "attn_v_b.weight", {H, dv, R}, H * dv, R, [kvb, dv, nope, kv_row](int64_t row, float* o) {
                     dequantize_row(*kvb, row / dv * kv_row + nope + row % dv, o);
                   }});
    mat(p + "attn_output.weight", a.o_proj);
    if (c.sparse_attention()) {
      mat(p + "indexer.attn_q_b.weight", a.indexer.wq_b);
      mat(p + "indexer.attn_k.weight", a.indexer.wk);
      vec(p + "indexer.k_norm.weight", a.indexer.k_norm_weight);
      vec(p + "indexer.k_norm.bias", a.indexer.k_norm_bias);
      mat(p + "indexer.proj.weight", a.indexer.weights_proj);
    }
    vec(p + "ffn_norm.weight", L.post_attention_layernorm);
    if (!L.is_moe) {
      mat(p + "ffn_gate.weight", L.mlp.gate_proj);
      mat(p + "ffn_up.weight", L.mlp.up_proj);
      mat(p + "ffn_down.weight", L.mlp.down_proj);
      continue;
    }
    mat(p + "ffn_gate_inp.weight", L.moe.gate);
    if (!L.moe.e_score_correction_bias.empty()) vec(p + "exp_probs_b.bias", L.moe.e_score_correction_bias);
    experts(p + "ffn_gate_exps.weight", L.moe.experts, &MLPWeights::gate_proj);
    experts(p + "ffn_up_exps.weight", L.moe.experts, &MLPWeights::up_proj);
    experts(p + "ffn_down_exps.weight", L.moe.experts, &MLPWeights::down_proj);
    if (c.n_shared_experts > 0) {
      mat(p + "ffn_gate_shexp.weight", L.moe.shared_experts.gate_proj);
      mat(p + "ffn_up_shexp.weight", L.moe.shared_experts.up_proj);
      mat(p + "ffn_down_shexp.weight", L.moe.shared_experts.down_proj);
    }
  }
  vec("output_norm.weight", W.norm);
  tied = c.tie_word_embeddings && W.lm_head.data == W.embed_tokens.data;
  if (!tied) mat("output.weight", W.lm_head);

  return src;
}

}  // namespace

void convert_to_gguf(const std::string& dir, const std::string& out, GgufFileType ft, ThreadPool& pool,
                     const std::function<void(size_t, size_t)>& progress) {
  const ModelConfig c = load_hf_config(dir);
  if (c.hyper_connections() && !c.shared_kv()) fail(dir, ": mHC models (hc_mult) other than DeepSeek-V4 have no llama.cpp GGUF layout");
  if (ft == GgufFileType::MXFP4_MOE && !c.shared_kv())
    fail(dir, ": mxfp4_moe is DeepSeek-V4's layout (llama.cpp's converter writes it for V4 only)");
  auto tensors = TensorSet::open(dir);
  auto W = bind_hf_weights(*tensors, c);

  GgufWriter w;
  // V3.2 is llama.cpp's deepseek32 (deepseek2's tensors and keys plus the lightning indexer's),
  // V4 its deepseek4.
  const std::string arch = c.shared_kv() ? "deepseek4" : c.sparse_attention() ? "deepseek32" : "deepseek2";
  w.set_string("general.architecture", arch);
  w.set_string("general.name", dir.substr(dir.find_last_of('/', dir.size() - 2) + 1));
  w.set_u32("general.quantization_version", 2);
  w.set_u32("general.file_type", llama_ftype(ft));
  if (c.shared_kv()) v4_metadata(c, w);
  else deepseek2_metadata(dir, c, arch + ".", w);
  add_tokenizer(dir, c.vocab_size, w);

  bool tied = false;
  std::vector<Source> src = c.shared_kv() ? v4_sources(c, *W, *tensors, ft) : deepseek2_sources(c, *W, tied);
  assign_types(src, ft, tied);
  for (const Source& s : src) w.add_tensor(s.name, s.dtype, s.shape);
  write_tensors(w, out, src, pool, progress);
}

}  // namespace whale
