// How an engine is sized and what it may do (EngineConfig::validate fills the derived sizes).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "core/sha256.h"

namespace whale {

struct EngineConfig {
  int64_t parallel = 4;        // sequences decoding at once
  int64_t ctx = 4096;          // the longest sequence (prompt + output) in tokens
  int64_t kv_tokens = 0;       // KV cache size in tokens; 0: parallel * ctx
  int64_t block_size = 16;     // tokens per KV block (allocation and prefix-cache unit)
  int64_t prefill_chunk = 512; // prompt tokens of one sequence per step
  int64_t step_tokens = 512;   // tokens per step (decode tokens count first)
  bool prefix_cache = true;
  // Storage of windowed cache groups (DeepSeek-V4's sliding-window kv and compressor inputs) in
  // blocks; 0: four times what the running sequences and a step hold at most (the rest keeps
  // finished conversations' last windows for a prefix hit). Never below that most.
  int64_t window_slots = 0;
  // Lower KV-cache tiers (RAM, disk: kv_store.h), shared by engines of the same model; null:
  // the pool only. The model's identity keys the blocks (block_key.h); computed when absent.
  std::shared_ptr<class KVStore> store;
  std::optional<Digest> model_identity;
  int64_t draft = 0;           // MTP draft tokens per sequence and step (0: no speculation; 1..8)
  // Benchmarks and tests only: the token proposed for output position i replaces the MTP
  // module's guess (the module still runs, so the cost is the real one). With the model's
  // own continuation this measures the ceiling of speculation (every draft accepted).
  std::function<int32_t(int64_t)> proposer;

  // Checks the sizes (Error naming the field) and fills kv_tokens and step_tokens.
  void validate();
};

}  // namespace whale
