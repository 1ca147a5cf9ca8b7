// Writes a checkpoint with random weights for a config: the real Hugging Face layout
// (config.json, safetensors shards + index), for tests and benchmarks at full model shapes
// without downloading weights.
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "model/config.h"

namespace whale {

struct RandomCheckpointOptions {
  DType dtype = DType::BF16;  // F32, BF16, or F8_E4M3 (projections FP8 with 128x128 scales)
  uint64_t seed = 0;
  uint64_t max_shard_bytes = uint64_t(4) << 30;
};

// `config_json` is written as the checkpoint's config.json (with quantization_config added
// for FP8). Projections are N(0, 1/in), embeddings N(0, 1), norms one, biases zero.
void write_random_checkpoint(const std::string& config_json, const ModelConfig& config, const std::string& out_dir,
                             const RandomCheckpointOptions& options, ThreadPool& pool);

}  // namespace whale
