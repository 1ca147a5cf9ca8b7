// A weight file in memory, read-only, in one of two ways:
//   kMap   the file mapped: used straight from the page cache, never copied, so a model of any
//          size costs only address space until touched (llama.cpp's default).
//   kCopy  read once into private anonymous memory (2 MiB aligned, transparent huge pages asked
//          for) by a few threads. On the VMs measured in BENCHMARKS.md decode read such memory
//          1.4-1.6x faster than the page cache holding the same file, PMD-mapped or not; the
//          price is load time (a few seconds per 10 GB from a warm page cache) and memory the
//          kernel cannot drop under pressure (llama.cpp's --no-mmap).
//   kAuto  kCopy when the file fits in MemAvailable with a reserve to spare, else kMap.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace whale {

enum class LoadMode { kAuto, kMap, kCopy };
LoadMode parse_load_mode(const std::string& s);  // "auto", "mmap", "copy"; throws otherwise
const char* load_mode_name(LoadMode m);
// Whether kAuto copies a file of `bytes` given `available` bytes of MemAvailable: it leaves at
// least 1 GiB and an eighth of what was available.
bool auto_load_copies(size_t bytes, size_t available);
// /proc/meminfo's MemAvailable in bytes (0 where it cannot be read: kAuto then maps).
size_t memory_available();

class MappedFile {
 public:
  explicit MappedFile(const std::string& path, LoadMode mode = LoadMode::kMap);  // throws whale::Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool copied() const { return copied_; }  // kCopy taken (or kAuto chose it)
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* region_ = nullptr;  // what munmap releases: the mapping, or the anonymous region of a copy
  size_t region_size_ = 0;
  bool copied_ = false;
};

// Whole-file read for small text files (config.json, index files). Rejects files over max_bytes.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t(64) << 20);
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace whale
