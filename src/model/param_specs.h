// The tensors of a Hugging Face DeepSeek checkpoint implied by a config: names, shapes and
// roles, in the layout of the released checkpoints. Used to write checkpoints (random init,
// conversion); loading binds the same names in weights.cpp, and a test keeps the two in step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace whale {

enum class ParamRole {
  Embedding,   // token embedding / LM head rows
  Linear,      // a [out, in] projection
  Router,      // the MoE gate (kept in high precision in FP8 checkpoints)
  Norm,        // RMSNorm weight, initialised to one
  Bias,        // e_score_correction_bias or a LayerNorm bias: float32, initialised to zero
  Hyper,       // mHC projection (fn), float32
  HyperBase,   // mHC bias (base), float32, initialised to zero
  HyperScale,  // mHC gates (scale), float32, initialised to one
  TokenTable,  // V4 hash routing (tid2eid): I64 [vocab, top_k], distinct experts per token
};

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  ParamRole role;
};

std::vector<ParamSpec> hf_param_specs(const ModelConfig& c);

}  // namespace whale
