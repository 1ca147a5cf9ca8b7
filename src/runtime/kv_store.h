// The tiers below the engine's block pool: a RAM tier and a disk tier (kv_disk.h), shared by
// every engine of a process that serves the same model (and, through the directory, by other
// processes). Blocks are addressed by content (block_key.h), so the store needs no knowledge
// of the model: the engine asks by key and gets bytes.
//
// Write-through, off the decode path: every block the engine's prefix cache indexes is handed
// to the store pinned in the pool (StoreJob); the store's writer thread copies it (then the
// pin can go), keeps the copy in the RAM tier and writes it to the disk tier. A tier that is
// full drops its least recently used blocks; a block dropped from RAM is still on disk.
// Loads run on their own thread, straight into pool blocks the engine set aside for them
// (LoadJob), from RAM where a copy is there and from disk otherwise, verified block by block;
// the engine keeps computing other requests meanwhile. Prefetch jobs (no destination) bring
// blocks of queued requests from disk into RAM before those requests are admitted.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "runtime/block_key.h"
#include "runtime/kv_disk.h"
#include "runtime/metrics.h"

namespace whale {

struct KVStoreOptions {
  uint64_t ram_bytes = 0;   // RAM tier capacity; 0: no RAM tier
  std::string disk_dir;     // disk tier directory; empty: no disk tier
  uint64_t disk_bytes = 0;  // disk tier capacity; 0: 64 GiB or half the free space, the smaller
};

enum class Tier : uint8_t { kNone, kRam, kDisk };

// A block handed to the store: its bytes (per cache group) stay valid until `copied`.
struct StoreJob {
  BlockKey key;
  std::vector<std::span<const std::byte>> pieces;
  std::atomic<bool> copied{false};
};

// Blocks to bring into pool memory. `loaded` counts the blocks verified from the first on
// (the rest are to be recomputed); from_ram + from_disk == loaded.
struct LoadJob {
  std::vector<BlockKey> keys;
  size_t block_bytes = 0;  // what every block must hold
  std::vector<std::vector<std::span<std::byte>>> dest;  // per block, per group; empty: prefetch into RAM
  std::function<void()> on_done;                        // called on the loader thread after `done` is set

  std::atomic<bool> cancel{false};
  std::atomic<bool> done{false};
  int64_t loaded = 0, from_ram = 0, from_disk = 0;
  double seconds = 0;
};

struct KVStoreStats {
  bool ram = false, disk = false;
  uint64_t ram_capacity = 0, disk_capacity = 0;
  int64_t ram_blocks = 0, ram_bytes = 0;
  uint64_t ram_hits = 0, ram_misses = 0, ram_evictions = 0, ram_bytes_written = 0, ram_bytes_read = 0;
  uint64_t disk_hits = 0, disk_misses = 0;
  uint64_t write_failures = 0;  // blocks that could not be written to disk (disk full, I/O error)
  DiskTierCounters disk_counters;
  Histogram ram_load_seconds, disk_load_seconds;  // per block
  KVStoreStats();
};

class KVStore {
 public:
  explicit KVStore(KVStoreOptions options);
  ~KVStore();  // finishes queued disk writes (a clean shutdown keeps every block)
  KVStore(const KVStore&) = delete;
  KVStore& operator=(const KVStore&) = delete;

  bool has_ram() const { return ram_capacity_ > 0; }
  bool has_disk() const { return disk_ != nullptr; }
  const std::string& disk_dir() const;
  std::string memo_dir() const;  // where model identities are remembered ("" without a disk tier)
  const Digest& nonce() const { return nonce_; }  // random: names this store within its process

  // Where each of `keys` is, from the first up to the first block no tier holds.
  std::vector<Tier> locate(std::span<const BlockKey> keys);
  // store(): the writer copies jobs while the disk keeps up (less than 512 MiB queued); past
  // that, jobs wait uncopied (their blocks stay pinned in the pool), never dropped.
  void store(std::shared_ptr<StoreJob> job);
  // load(): admission loads run before prefetch jobs (destination-less), each in order.
  void load(std::shared_ptr<LoadJob> job);
  // A load not started yet ends at once (done, nothing loaded); a running one after its
  // current block.
  void cancel(LoadJob& job);
  // Returns when every block handed to store() is in its tiers; false if some could not be
  // written to disk since the last flush.
  bool flush();

  KVStoreStats stats() const;

 private:
  struct RamBlock {
    std::shared_ptr<const std::vector<std::byte>> data;
    std::list<BlockKey>::iterator lru;
  };
  void ram_put(const BlockKey& key, std::shared_ptr<const std::vector<std::byte>> data);  // mu_ held
  std::shared_ptr<const std::vector<std::byte>> ram_get(const BlockKey& key);
  void writer_loop();
  void loader_loop();
  void run_load(LoadJob& job);

  uint64_t ram_capacity_;
  std::unique_ptr<DiskTier> disk_;

  mutable std::mutex mu_;  // RAM tier, queues, stats
  std::condition_variable cv_, idle_cv_;
  std::unordered_map<BlockKey, RamBlock, DigestHash> ram_;
  std::list<BlockKey> ram_lru_;  // most recent first
  uint64_t ram_used_ = 0;
  std::deque<std::shared_ptr<StoreJob>> to_copy_;
  std::deque<std::pair<BlockKey, std::shared_ptr<const std::vector<std::byte>>>> to_write_;
  uint64_t to_write_bytes_ = 0;
  std::deque<std::shared_ptr<LoadJob>> to_load_, to_prefetch_;
  int writing_ = 0;
  uint64_t failures_at_flush_ = 0;
  Digest nonce_;
  bool stop_ = false;
  KVStoreStats stats_;
  std::thread writer_, loader_;
};

// "512M", "8GiB", "1.5G", "0", "1000000": bytes (K/M/G/T are powers of 1024; a trailing B or
// iB is accepted). Error naming `what` otherwise.
uint64_t parse_byte_size(const std::string& text, const std::string& what);

}  // namespace whale
