// llama.cpp's `deepseek2`, `deepseek32` and `deepseek4` GGUF files as whale models: the metadata
// becomes a ModelConfig and the tensors are renamed to the Hugging Face (V4: DeepSeek's released)
// names the weight binder knows (stacked expert
// tensors sliced per expert without copying). The embedded tokenizer: formats/gguf_tokenizer.h.
#pragma once
#include <memory>
#include <string>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/config.h"

namespace whale {

// Throws, naming the file and key, for other architectures and inconsistent metadata.
ModelConfig gguf_model_config(const GgufFile& f);

// HF-named tensors: model.layers.N.self_attn.q_a_proj.weight, ..., and for files in the split
// MLA layout `self_attn.k_b_proj.weight` [H·kv_lora_rank, qk_nope_head_dim] and
// `self_attn.v_b_proj.weight` [H·v_head_dim, kv_lora_rank] instead of kv_b_proj.
std::unique_ptr<TensorSet> gguf_tensor_set(std::shared_ptr<const GgufFile> f, const ModelConfig& c);

}  // namespace whale
