// The disk tier of the KV cache: one file per block, named by its key (block_key.h), in a
// directory that survives restarts and may be shared by several processes.
//
//   DIR/blocks/ab/abcdef....kvb   a block: 64-byte header, then the block's bytes
//   DIR/tmp/                      files being written (host.pid.n.tmp)
//   DIR/gc.lock                   held (flock) by the one process collecting garbage
//   DIR/models/                   model identities, remembered (block_key.h)
//
// Header: "WHALEKVB", format version (u32), header size (u32), the key (32 bytes), payload
// bytes (u64), XXH3-64 of the header's first 56 bytes and the payload (u64); little-endian.
//
// Writes go to a temporary file, are flushed (fdatasync) and renamed into place, so a file
// under a block's name is always complete: a crash (kill -9, power loss) leaves at worst a
// temporary file, which the next start sweeps. Every read checks the header against the key
// asked for and the checksum against the bytes read; a file that fails (truncated, flipped
// bytes, another block's or another format's file) is never served: it is counted, deleted
// and its block recomputed. Two processes may share the directory: renames are atomic, a file
// being read stays readable after a concurrent delete, a block written by one process is
// found by the other on lookup, and garbage collection (oldest modification time first: a
// hit refreshes it) runs in one process at a time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <ctime>
#include <unordered_map>
#include <vector>

#include "core/sha256.h"

namespace whale {

struct DiskTierCounters {
  uint64_t writes = 0, write_bytes = 0, write_errors = 0;
  uint64_t reads = 0, read_bytes = 0, corrupt = 0, evictions = 0;
  int64_t blocks = 0, bytes = 0;  // what this process knows to be in the directory
};

class DiskTier {
 public:
  static constexpr size_t kHeaderBytes = 64;

  // Creates the directory as needed, sweeps stale temporary files and indexes the blocks in
  // it. Error naming the directory when it can't be created or written. capacity_bytes 0:
  // half of what the directory holds plus the free space of its filesystem, at most 64 GiB
  // (Error when that is under 64 MiB). Each process collects down to its own capacity.
  DiskTier(std::string dir, uint64_t capacity_bytes);

  const std::string& dir() const { return dir_; }
  uint64_t capacity() const { return capacity_; }

  bool contains(const Digest& key);  // present on disk now (whoever wrote it)
  // Writes a block (atomically, durably). false on an I/O error (disk full, ...), counted.
  bool write(const Digest& key, std::span<const std::span<const std::byte>> pieces);
  enum class Read { kOk, kMissing, kCorrupt };
  // Reads a block into `pieces` (its bytes in order; sizes must add up to the payload) and
  // verifies it. On kCorrupt the file is gone and `pieces` hold garbage. A file of another
  // format version is kMissing and left alone (another whale may share the directory).
  Read read(const Digest& key, std::span<const std::span<std::byte>> pieces);
  // Asks the kernel to start reading a block's file (reads ahead of a load).
  void advise(const Digest& key) const;
  // Removes blocks (oldest first) until the directory holds at most `target` bytes; one
  // process at a time (returns at once if another is collecting).
  void collect(uint64_t target);

  DiskTierCounters counters() const;
  std::string block_path(const Digest& key) const;

  // The header and checksum rules, for the fuzz target and tests: whether `file` (a whole
  // block file) is a valid block of `payload_bytes` bytes under `key`.
  static bool valid_file(std::span<const std::byte> file, const Digest& key, size_t payload_bytes);

 private:
  struct BlockFile {
    Digest key;
    std::string path;
    uint64_t bytes;
    timespec mtime;
  };
  std::vector<BlockFile> block_files() const;  // the block files in the directory now
  void sweep_temporaries();
  void scan();
  void forget(const Digest& key);

  std::string dir_;
  uint64_t capacity_;
  mutable std::mutex mu_;  // index and counters; file I/O runs outside it
  struct Entry {
    uint64_t bytes;
  };
  std::unordered_map<Digest, Entry, DigestHash> index_;
  DiskTierCounters counters_;
  uint64_t tmp_counter_ = 0;
  std::string tmp_prefix_;  // host.pid.nonce.
};

}  // namespace whale
