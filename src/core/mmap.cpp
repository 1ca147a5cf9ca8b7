#include "core/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace whale {

LoadMode parse_load_mode(const std::string& s) {
  if (s == "auto") return LoadMode::kAuto;
  if (s == "mmap") return LoadMode::kMap;
  if (s == "copy") return LoadMode::kCopy;
  fail("unknown load mode '", s, "' (auto, mmap or copy)");
}

const char* load_mode_name(LoadMode m) {
  switch (m) {
    case LoadMode::kMap: return "mmap";
    case LoadMode::kCopy: return "copy";
    default: return "auto";
  }
}

bool auto_load_copies(size_t bytes, size_t available) {
  const size_t reserve = std::max(size_t(1) << 30, available / 8);
  return available > reserve && bytes <= available - reserve;
}

size_t memory_available() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  std::fclose(f);
  return size_t(kb) * 1024;
}

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kReadChunk = size_t(64) << 20;  // bytes per pread task

// Reads the whole file into dst with a few threads (each pread faults in and fills its own
// pages, which is most of the cost: one thread managed about 1.1 GB/s here).
void read_file_into(int fd, uint8_t* dst, size_t size, const std::string& path) {
  std::atomic<size_t> next{0};
  std::atomic<int> error{0};
  std::atomic<size_t> short_at{size};
  auto work = [&] {
    for (;;) {
      const size_t off = next.fetch_add(kReadChunk);
      if (off >= size || error.load() || short_at.load() < size) return;
      const size_t len = std::min(kReadChunk, size - off);
      for (size_t got = 0; got < len;) {
        const ssize_t n = ::pread(fd, dst + off + got, len - got, off_t(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          error.store(errno);
          return;
        }
        if (n == 0) {  // the file shrank under us
          short_at.store(std::min(short_at.load(), off + got));
          return;
        }
        got += size_t(n);
      }
    }
  };
  const int n_threads = int(std::min<size_t>(size_t(ThreadPool::default_threads()), (size + kReadChunk - 1) / kReadChunk));
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  if (error.load()) fail(path, ": read failed: ", std::strerror(error.load()));
  if (short_at.load() < size) fail(path, ": file ended at byte ", short_at.load(), " of ", size, " while loading (changed on disk?)");
}
}  // namespace

MappedFile::MappedFile(const std::string& path, LoadMode mode) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  size_ = size_t(st.st_size);
  if (mode == LoadMode::kAuto) mode = auto_load_copies(size_, memory_available()) ? LoadMode::kCopy : LoadMode::kMap;
  if (size_ > 0 && mode == LoadMode::kCopy) {
    // An anonymous region rounded out to whole huge pages, its start aligned to one, so that
    // every 2 MiB of the copy can be one huge page.
    const size_t span = (size_ + kHugePage - 1) / kHugePage * kHugePage;
    void* raw = ::mmap(nullptr, span + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail(path, ": cannot allocate ", size_, " bytes to load it into: ", std::strerror(e));
    }
    const uintptr_t base = reinterpret_cast<uintptr_t>(raw), start = (base + kHugePage - 1) & ~(kHugePage - 1);
    if (start > base) ::munmap(raw, start - base);
    ::munmap(reinterpret_cast<void*>(start + span), base + kHugePage - start);  // never empty: start < base + kHugePage
    region_ = reinterpret_cast<void*>(start);
    region_size_ = span;
    ::madvise(region_, span, MADV_HUGEPAGE);  // advice only: without THP the copy still works
    try {
      read_file_into(fd, static_cast<uint8_t*>(region_), size_, path);
    } catch (...) {
      ::munmap(region_, region_size_);
      ::close(fd);
      throw;
    }
    ::mprotect(region_, span, PROT_READ);  // weights are read-only, as when mapped
    data_ = static_cast<const uint8_t*>(region_);
    copied_ = true;
  } else if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail(path, ": mmap failed: ", std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
    region_ = p;
    region_size_ = size_;
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (region_) ::munmap(region_, region_size_);
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  if (size_t(st.st_size) > max_bytes) {
    ::close(fd);
    fail(path, ": file too large (", st.st_size, " bytes, limit ", max_bytes, ")");
  }
  std::string out(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += size_t(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace whale
