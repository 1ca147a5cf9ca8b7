#include "core/durable.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/error.h"

namespace whale {

namespace {
void fsync_fd_or_fail(int fd, const std::string& path) {
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, ": cannot sync to disk: ", std::strerror(err));
  }
}
}  // namespace

void write_file_synced(const std::string& path, std::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, ": cannot write: ", std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      fail(path, ": write failed: ", n < 0 ? std::strerror(err) : "no progress (disk full?)");
    }
    done += size_t(n);
  }
  fsync_fd_or_fail(fd, path);
  if (::close(fd) != 0) fail(path, ": write failed: ", std::strerror(errno));
}

void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open to sync: ", std::strerror(errno));
  fsync_fd_or_fail(fd, path);
  ::close(fd);
}

void sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open directory to sync: ", std::strerror(errno));
  fsync_fd_or_fail(fd, path);
  ::close(fd);
}

void fault_point(const char* name) {
  // Read on every call (a few per checkpoint), so a forked or re-executed process sees its own.
  const char* env = std::getenv("WHALE_FAULT");
  if (!env || !*env) return;
  std::string target = env;
  long n = 1;
  const auto colon = target.rfind(':');  // NAME:N; names contain colons themselves
  if (colon != std::string::npos && colon + 1 < target.size() &&
      target.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
    n = std::strtol(target.c_str() + colon + 1, nullptr, 10);
    target.resize(colon);
  }
  if (target != name) return;
  static std::mutex mu;
  static long hits = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (++hits == n) ::_exit(137);
}

}  // namespace whale
