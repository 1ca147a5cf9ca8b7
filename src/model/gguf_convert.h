// Hugging Face DeepSeek checkpoint -> llama.cpp `deepseek2` / `deepseek32` / `deepseek4` GGUF, as llama.cpp's own converter
// writes it (metadata keys, tensor names, stacked experts, the split attn_k_b/attn_v_b MLA
// layout, the embedded tokenizer), optionally quantized with llama.cpp's type choices.
#pragma once
#include <functional>
#include <string>

#include "core/thread_pool.h"

namespace whale {

enum class GgufFileType {
  F32,     // everything f32
  F16,     // matrices f16
  BF16,    // matrices bf16
  Q8_0,    // matrices Q8_0
  Q4_0,    // matrices Q4_0, the output Q6_K (llama.cpp's mix; Ollama's default for many models)
  Q4_K_M,  // Q4_K, with Q6_K for the output and every third-ish ffn_down (llama.cpp's mix); rows
           // that are not whole 256-value blocks fall back to Q5_0 (Q6_K ones to Q8_0)
  MXFP4_MOE,  // DeepSeek-V4 only: llama.cpp's converter layout (MXFP4 experts, FP8 matrices Q8_0,
              // BF16/F32 ones as stored). V4's FP4 experts are MXFP4 under every type
              // but F32 (a lossless repack).
};

// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "mxfp4_moe"
GgufFileType parse_gguf_file_type(const std::string& name);

// Reads MODEL_DIR (config.json, safetensors, tokenizer.json) and writes OUT atomically.
// MTP modules are not written (llama.cpp's converter drops them too). `progress` gets
// (tensors done, tensors total) after each tensor.
void convert_to_gguf(const std::string& model_dir, const std::string& out, GgufFileType type, ThreadPool& pool,
                     const std::function<void(size_t, size_t)>& progress = nullptr);

}  // namespace whale
