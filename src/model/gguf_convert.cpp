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
  fail("unknown GGUF type '", name, "' (f32, f16, bf16, q8_0, q4_0, q4_k_m)");
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
};

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
  // Norms, routers and V3.2's indexer head weights (computed in float32 by DeepSeek) stay F32.
  if (!matrix || name.find("_norm.weight") != std::string::npos || name.find("ffn_gate_inp") != std::string::npos ||
      name.find("indexer.proj") != std::string::npos)
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

}  // namespace

void convert_to_gguf(const std::string& dir, const std::string& out, GgufFileType ft, ThreadPool& pool,
                     const std::function<void(size_t, size_t)>& progress) {
  const ModelConfig c = load_hf_config(dir);
  if (c.hyper_connections()) fail(dir, ": mHC models (hc_mult) have no llama.cpp GGUF layout");
  auto tensors = TensorSet::open(dir);
  auto W = bind_hf_weights(*tensors, c);

  if (c.shared_kv()) fail(dir, ": DeepSeek-V4 (deepseek4) GGUF files are not written yet");
  GgufWriter w;
  // V3.2 is llama.cpp's deepseek32: deepseek2's tensors and keys plus the lightning indexer's.
  const std::string arch = c.sparse_attention() ? "deepseek32" : "deepseek2", A = arch + ".";
  w.set_string("general.architecture", arch);
  w.set_string("general.name", dir.substr(dir.find_last_of('/', dir.size() - 2) + 1));
  w.set_u32("general.quantization_version", 2);
  w.set_u32("general.file_type", llama_ftype(ft));
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
    w.set_string(A + "rope.scaling.type", "yarn");
    w.set_f32(A + "rope.scaling.factor", float(c.yarn.factor));
    w.set_u32(A + "rope.scaling.original_context_length", uint32_t(c.yarn.original_max_position_embeddings));
    w.set_f32(A + "rope.scaling.yarn_beta_fast", float(c.yarn.beta_fast));
    w.set_f32(A + "rope.scaling.yarn_beta_slow", float(c.yarn.beta_slow));
    w.set_f32(A + "rope.scaling.yarn_log_multiplier", float(0.1 * c.yarn.mscale_all_dim));
  }
  add_tokenizer(dir, c.vocab_size, w);

  // The tensors, in llama.cpp's order and names.
  std::vector<Source> src;
  auto vec = [&](const std::string& name, const std::vector<float>& v) {
    const std::vector<float>* p = &v;
    src.push_back({name, {int64_t(v.size())}, 1, int64_t(v.size()), [p](int64_t, float* o) {
                     std::memcpy(o, p->data(), p->size() * 4);
                   }});
  };
  auto mat = [&](const std::string& name, const Weight& m) {
    const Weight* p = &m;
    src.push_back({name, {m.rows, m.cols}, m.rows, m.cols, [p](int64_t r, float* o) { dequantize_row(*p, r, o); }});
  };
  auto experts = [&](const std::string& name, const std::vector<MLPWeights>& e, Weight MLPWeights::*which) {
    const std::vector<MLPWeights>* p = &e;
    const int64_t rows = (e[0].*which).rows, cols = (e[0].*which).cols, E = int64_t(e.size());
    src.push_back({name, {E, rows, cols}, E * rows, cols,
                   [p, which, rows](int64_t r, float* o) { dequantize_row((*p)[size_t(r / rows)].*which, r % rows, o); }});
  };
  const int64_t H = c.num_attention_heads, R = c.kv_lora_rank, nope = c.qk_nope_head_dim, dv = c.v_head_dim;
  const int64_t kv_row = nope + dv;

  mat("token_embd.weight", W->embed_tokens);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = W->layers[size_t(l)];
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
  vec("output_norm.weight", W->norm);
  const bool tied = c.tie_word_embeddings && W->lm_head.data == W->embed_tokens.data;
  if (!tied) mat("output.weight", W->lm_head);

  int64_t n_ffn_down = 0;
  for (const Source& s : src) n_ffn_down += s.name.find("ffn_down") != std::string::npos;
  for (Source& s : src) {
    int64_t layer = 0;
    if (s.name.rfind("blk.", 0) == 0) layer = std::stoll(s.name.substr(4));
    s.dtype = choose_type(ft, s.name, layer, n_ffn_down, tied, s.cols, s.shape.size() >= 2);
    w.add_tensor(s.name, s.dtype, s.shape);
  }

  size_t done = 0;
  w.write(out, [&](size_t i, uint8_t* buf) {
    const Source& s = src[i];
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

}  // namespace whale
