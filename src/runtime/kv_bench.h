// The KV cache's tiers measured: time to first token for one long prompt cold, as an engine
// pool hit, as a RAM-tier hit (a new engine over the same store) and as a disk-tier hit after
// a restart (a new store over the same directory, its files dropped from the page cache), the
// disk read against the disk's own sequential read bandwidth; then several sessions at once
// whose caches do not all fit in the RAM tier, cold and resumed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace whale {

struct KVBenchOptions {
  std::string disk_dir;          // the disk tier goes in a fresh directory inside this one
  int64_t prompt_tokens = 16384;
  int sessions = 8;              // 0: skip the sessions part
  int64_t session_tokens = 2048;
  int64_t session_parallel = 4;  // sessions running at once (the rest queue and are prefetched)
};

struct KVBenchResult {
  int64_t prompt_tokens = 0, block_bytes = 0, blocks = 0;
  double cold = 0, pool = 0, ram = 0, disk = 0;  // time to first token, seconds
  int64_t cached_pool = 0, cached_ram = 0, cached_disk = 0;
  double disk_load_seconds = 0;  // of `disk`: the store's loader reading and verifying the blocks
  uint64_t disk_read_bytes = 0;
  double disk_sequential_bw = 0;  // bytes/s: one large file read sequentially, page cache dropped
  bool outputs_equal = true;      // every hit gave the cold run's first token and logprob

  int sessions = 0;
  int64_t session_tokens = 0;
  uint64_t ram_capacity = 0;
  std::vector<double> session_cold, session_resumed;  // per session, seconds to first token
  int64_t resumed_ram_tokens = 0, resumed_disk_tokens = 0, resumed_computed_tokens = 0;
};

KVBenchResult bench_kv_tiers(Model& model, const KVBenchOptions& options);

// Reads a file of `bytes` written for the purpose in `dir` after dropping it from the page
// cache: the sequential read bandwidth of that filesystem's device, bytes/s.
double measure_disk_read_bandwidth(const std::string& dir, size_t bytes = size_t(512) << 20);

}  // namespace whale
