// Resident memory of this process, split into anonymous memory (what the process itself
// allocated) and file-backed pages (e.g. mmap'd weights, shared with the page cache).
#pragma once
#include <cstdint>

namespace whale {

struct MemoryStats {
  int64_t rss_bytes = 0, rss_anon_bytes = 0, rss_file_bytes = 0, peak_rss_bytes = 0;
};

MemoryStats read_memory_stats();  // from /proc/self/status; zeros where unavailable

}  // namespace whale
