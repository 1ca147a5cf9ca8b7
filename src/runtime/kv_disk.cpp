#include "runtime/kv_disk.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <vector>

#include "core/durable.h"
#include "core/error.h"

namespace whale {

namespace {

constexpr char kMagic[8] = {'W', 'H', 'A', 'L', 'E', 'K', 'V', 'B'};
constexpr uint32_t kVersion = 1;
constexpr size_t kChecksumAt = 56;  // the checksum covers the header up to here, then the payload
constexpr time_t kStaleTemporarySeconds = 3600;

void put_u32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (8 * i));
}
void put_u64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = std::byte(v >> (8 * i));
}
uint64_t get_u64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}
uint32_t get_u32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}

// The header of a block file, checksum excluded.
void fill_header(std::byte* h, const Digest& key, uint64_t payload) {
  std::memset(h, 0, DiskTier::kHeaderBytes);
  std::memcpy(h, kMagic, 8);
  put_u32(h + 8, kVersion);
  put_u32(h + 12, uint32_t(DiskTier::kHeaderBytes));
  std::memcpy(h + 16, key.bytes.data(), 32);
  put_u64(h + 48, payload);
}

class Checksum {
 public:
  Checksum() : st_(XXH3_createState()) {
    WHALE_CHECK(st_ && XXH3_64bits_reset(st_) == XXH_OK, "xxhash: cannot create a state");
  }
  ~Checksum() { XXH3_freeState(st_); }
  void update(const void* p, size_t n) { XXH3_64bits_update(st_, p, n); }
  uint64_t digest() const { return XXH3_64bits_digest(st_); }

 private:
  XXH3_state_t* st_;
};

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  std::string h(buf);
  std::replace(h.begin(), h.end(), '.', '_');
  return h.empty() ? "host" : h;
}

void make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) fail(path, ": cannot create directory: ", std::strerror(errno));
}

// The directory's entries (names only, "." and ".." left out).
std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

// Full transfers of a vector of pieces at an offset (pwritev/preadv may move fewer bytes).
template <bool kWrite, class Piece>
bool transfer(int fd, std::span<const Piece> pieces, off_t offset) {
  std::vector<iovec> iov;
  for (const auto& p : pieces)
    if (!p.empty()) iov.push_back({(void*)p.data(), p.size()});
  size_t i = 0;
  while (i < iov.size()) {
    const int cnt = int(std::min<size_t>(iov.size() - i, IOV_MAX));
    const ssize_t n = kWrite ? ::pwritev(fd, &iov[i], cnt, offset) : ::preadv(fd, &iov[i], cnt, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    offset += n;
    size_t left = size_t(n);
    while (left > 0 && left >= iov[i].iov_len) left -= iov[i++].iov_len;
    if (left > 0) {
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
      iov[i].iov_len -= left;
    }
  }
  return true;
}

}  // namespace

DiskTier::DiskTier(std::string dir, uint64_t capacity_bytes) : dir_(std::move(dir)), capacity_(capacity_bytes) {
  WHALE_CHECK(!dir_.empty(), "--kv-disk: an empty directory name");
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) fail(dir_, ": cannot create the KV-cache directory: ", ec.message());
  make_dir(dir_ + "/blocks");
  make_dir(dir_ + "/tmp");
  make_dir(dir_ + "/models");
  if (::access((dir_ + "/tmp").c_str(), W_OK) != 0) fail(dir_, ": the KV-cache directory is not writable: ", std::strerror(errno));
  std::random_device rd;
  char nonce[32];
  std::snprintf(nonce, sizeof nonce, "%08x%08x", rd(), rd());
  tmp_prefix_ = dir_ + "/tmp/" + hostname() + "." + std::to_string(::getpid()) + "." + nonce + ".";
  sweep_temporaries();
  scan();
  if (capacity_ == 0) {
    capacity_ = uint64_t(64) << 30;
    struct statvfs fs {};
    if (::statvfs(dir_.c_str(), &fs) == 0)
      capacity_ = std::min(capacity_, (uint64_t(fs.f_bavail) * fs.f_frsize + uint64_t(counters_.bytes)) / 2);
    if (capacity_ < (uint64_t(64) << 20))
      fail(dir_, ": too little free space for a KV-cache disk tier (give --kv-disk-size, or free some space)");
  }
}

std::string DiskTier::block_path(const Digest& key) const {
  const std::string h = key.hex();
  return dir_ + "/blocks/" + h.substr(0, 2) + "/" + h + ".kvb";
}

void DiskTier::sweep_temporaries() {
  const std::string tmp = dir_ + "/tmp";
  const std::string host = hostname();
  const time_t now = ::time(nullptr);
  for (const std::string& name : list_dir(tmp)) {
    const std::string path = tmp + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    bool stale = now - st.st_mtime > kStaleTemporarySeconds;
    // host.pid.nonce.n.tmp: a file of this host whose writer is gone is stale at once.
    const size_t a = name.find('.'), b = a == std::string::npos ? a : name.find('.', a + 1);
    if (!stale && b != std::string::npos && name.substr(0, a) == host) {
      const long pid = std::strtol(name.substr(a + 1, b - a - 1).c_str(), nullptr, 10);
      stale = pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH;
    }
    if (stale) ::unlink(path.c_str());
  }
}

std::vector<DiskTier::BlockFile> DiskTier::block_files() const {
  std::vector<BlockFile> files;
  for (const std::string& sub : list_dir(dir_ + "/blocks")) {
    const std::string d = dir_ + "/blocks/" + sub;
    for (const std::string& name : list_dir(d)) {
      if (name.size() != 68 || name.substr(64) != ".kvb") continue;
      const auto key = Digest::from_hex(name.substr(0, 64));
      struct stat st {};
      const std::string p = d + "/" + name;
      if (!key || ::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      files.push_back({*key, p, uint64_t(st.st_size), st.st_mtim});
    }
  }
  return files;
}

void DiskTier::scan() {
  std::unordered_map<Digest, Entry, DigestHash> index;
  uint64_t bytes = 0;
  for (const BlockFile& f : block_files()) {
    index[f.key] = {f.bytes};
    bytes += f.bytes;
  }
  std::lock_guard<std::mutex> lock(mu_);
  index_ = std::move(index);
  counters_.blocks = int64_t(index_.size());
  counters_.bytes = int64_t(bytes);
}

void DiskTier::forget(const Digest& key) {  // mu_ held
  auto it = index_.find(key);
  if (it == index_.end()) return;
  counters_.blocks -= 1;
  counters_.bytes -= int64_t(it->second.bytes);
  index_.erase(it);
}

bool DiskTier::contains(const Digest& key) {
  // The file system, not the index, decides: another process may have written or collected it.
  struct stat st {};
  if (::stat(block_path(key).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::lock_guard<std::mutex> lock(mu_);
    forget(key);
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (index_.emplace(key, Entry{uint64_t(st.st_size)}).second) {
    counters_.blocks += 1;
    counters_.bytes += st.st_size;
  }
  return true;
}

bool DiskTier::write(const Digest& key, std::span<const std::span<const std::byte>> pieces) {
  uint64_t payload = 0;
  for (const auto& p : pieces) payload += p.size();
  std::byte header[kHeaderBytes];
  fill_header(header, key, payload);
  Checksum sum;
  sum.update(header, kChecksumAt);
  for (const auto& p : pieces) sum.update(p.data(), p.size());
  put_u64(header + kChecksumAt, sum.digest());

  std::string tmp;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tmp = tmp_prefix_ + std::to_string(tmp_counter_++) + ".tmp";
  }
  const std::string path = block_path(key);
  auto failed = [&](int fd) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.write_errors;
    return false;
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return failed(fd);
  std::vector<std::span<const std::byte>> all{{header, kHeaderBytes}};
  all.insert(all.end(), pieces.begin(), pieces.end());
  if (!transfer<true>(fd, std::span<const std::span<const std::byte>>(all), 0)) return failed(fd);
  fault_point("kv_disk.before_sync");
  if (::fdatasync(fd) != 0) return failed(fd);
  if (::close(fd) != 0) return failed(-1);
  fault_point("kv_disk.before_rename");
  const std::string sub = path.substr(0, path.rfind('/'));
  if (::mkdir(sub.c_str(), 0755) != 0 && errno != EEXIST) return failed(-1);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return failed(-1);
  bool over = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t bytes = kHeaderBytes + payload;
    if (index_.emplace(key, Entry{bytes}).second) {
      counters_.blocks += 1;
      counters_.bytes += int64_t(bytes);
    }
    counters_.writes += 1;
    counters_.write_bytes += bytes;
    over = uint64_t(counters_.bytes) > capacity_;
  }
  if (over) collect(capacity_ / 10 * 9);
  return true;
}

DiskTier::Read DiskTier::read(const Digest& key, std::span<const std::span<std::byte>> pieces) {
  uint64_t payload = 0;
  for (const auto& p : pieces) payload += p.size();
  const std::string path = block_path(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::lock_guard<std::mutex> lock(mu_);
    forget(key);
    return Read::kMissing;
  }
  auto corrupt = [&] {
    // Never served; the block is recomputed (and written again). Deleted only if the name
    // still holds this file (another process may have renamed a good one into place).
    struct stat mine {}, now {};
    if (::fstat(fd, &mine) == 0 && ::stat(path.c_str(), &now) == 0 && mine.st_ino == now.st_ino && mine.st_dev == now.st_dev)
      ::unlink(path.c_str());
    ::close(fd);
    std::lock_guard<std::mutex> lock(mu_);
    forget(key);
    ++counters_.corrupt;
    return Read::kCorrupt;
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0 || uint64_t(st.st_size) < kHeaderBytes) return corrupt();
  std::byte header[kHeaderBytes];
  const std::span<std::byte> hs(header, kHeaderBytes);
  if (!transfer<false>(fd, std::span<const std::span<std::byte>>(&hs, 1), 0)) return corrupt();
  std::byte expect[kHeaderBytes];
  fill_header(expect, key, payload);
  if (std::memcmp(header, expect, 8) == 0 && get_u32(header + 8) != kVersion) {  // another whale's format
    ::close(fd);
    return Read::kMissing;
  }
  if (uint64_t(st.st_size) != kHeaderBytes + payload || std::memcmp(header, expect, kChecksumAt) != 0) return corrupt();
  if (!transfer<false>(fd, pieces, off_t(kHeaderBytes))) return corrupt();
  Checksum sum;
  sum.update(header, kChecksumAt);
  for (const auto& p : pieces) sum.update(p.data(), p.size());
  if (sum.digest() != get_u64(header + kChecksumAt)) return corrupt();
  ::futimens(fd, nullptr);  // a hit is a use: garbage collection removes the oldest first
  ::close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  counters_.reads += 1;
  counters_.read_bytes += kHeaderBytes + payload;
  return Read::kOk;
}

void DiskTier::advise(const Digest& key) const {
  const int fd = ::open(block_path(key).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
  ::close(fd);
}

bool DiskTier::valid_file(std::span<const std::byte> file, const Digest& key, size_t payload_bytes) {
  if (file.size() != kHeaderBytes + payload_bytes) return false;
  std::byte expect[kHeaderBytes];
  fill_header(expect, key, payload_bytes);
  if (std::memcmp(file.data(), expect, kChecksumAt) != 0) return false;
  Checksum sum;
  sum.update(file.data(), kChecksumAt);
  sum.update(file.data() + kHeaderBytes, payload_bytes);
  return sum.digest() == get_u64(file.data() + kChecksumAt) && get_u32(file.data() + 8) == kVersion;
}

void DiskTier::collect(uint64_t target) {
  const std::string lock_path = dir_ + "/gc.lock";
  const int lfd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lfd < 0) return;
  if (::flock(lfd, LOCK_EX | LOCK_NB) != 0) {  // another process is collecting
    ::close(lfd);
    return;
  }
  // The directory as it is now (other processes' blocks included), oldest first.
  std::vector<BlockFile> files = block_files();
  uint64_t total = 0;
  for (const BlockFile& f : files) total += f.bytes;
  std::sort(files.begin(), files.end(), [](const BlockFile& a, const BlockFile& b) {
    return a.mtime.tv_sec != b.mtime.tv_sec ? a.mtime.tv_sec < b.mtime.tv_sec : a.mtime.tv_nsec < b.mtime.tv_nsec;
  });
  uint64_t removed = 0;
  size_t i = 0;
  for (; i < files.size() && total > target; ++i) {
    if (::unlink(files[i].path.c_str()) == 0) ++removed;
    total -= files[i].bytes;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    index_.clear();
    counters_.blocks = 0;
    counters_.bytes = 0;
    for (size_t j = i; j < files.size(); ++j) {
      index_[files[j].key] = {files[j].bytes};
      counters_.blocks += 1;
      counters_.bytes += int64_t(files[j].bytes);
    }
    counters_.evictions += removed;
  }
  ::flock(lfd, LOCK_UN);
  ::close(lfd);
}

DiskTierCounters DiskTier::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace whale
