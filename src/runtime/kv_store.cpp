#include "runtime/kv_store.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <unistd.h>

#include "core/error.h"

namespace whale {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
constexpr uint64_t kWriteQueueBytes = uint64_t(512) << 20;  // beyond this, copies wait for the disk
const std::vector<double> kLoadBounds = {1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0};
}  // namespace

KVStoreStats::KVStoreStats() : ram_load_seconds(kLoadBounds), disk_load_seconds(kLoadBounds) {}

uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    fail(what, ": '", text, "' is not a size (examples: 0, 512M, 8G, 1.5GiB)");
  }
  std::string unit = text.substr(used);
  if (unit.size() >= 2 && unit.substr(unit.size() - 2) == "iB") unit.resize(unit.size() - 2);
  else if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  double mult = 1;
  if (unit == "K" || unit == "k") mult = 1024.0;
  else if (unit == "M" || unit == "m") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty()) fail(what, ": unknown unit in '", text, "' (use K, M, G or T)");
  if (!(v >= 0) || !std::isfinite(v) || v * mult > 1.8e19) fail(what, ": '", text, "' is out of range");
  return uint64_t(v * mult);
}

KVStore::KVStore(KVStoreOptions o) : ram_capacity_(o.ram_bytes) {
  std::random_device rd;
  nonce_ = Sha256().update_u64((uint64_t(rd()) << 32) | rd()).update_u64(uint64_t(::getpid())).finish();
  if (!o.disk_dir.empty()) disk_ = std::make_unique<DiskTier>(o.disk_dir, o.disk_bytes);
  stats_.ram = ram_capacity_ > 0;
  stats_.disk = disk_ != nullptr;
  stats_.ram_capacity = ram_capacity_;
  stats_.disk_capacity = disk_ ? disk_->capacity() : 0;
  writer_ = std::thread([this] { writer_loop(); });
  loader_ = std::thread([this] { loader_loop(); });
}

KVStore::~KVStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
  loader_.join();
}

const std::string& KVStore::disk_dir() const {
  static const std::string none;
  return disk_ ? disk_->dir() : none;
}

std::string KVStore::memo_dir() const { return disk_ ? disk_->dir() + "/models" : ""; }

void KVStore::ram_put(const BlockKey& key, std::shared_ptr<const std::vector<std::byte>> data) {
  if (ram_capacity_ == 0 || data->size() > ram_capacity_) return;
  auto it = ram_.find(key);
  if (it != ram_.end()) {  // already there: now the most recent
    ram_lru_.splice(ram_lru_.begin(), ram_lru_, it->second.lru);
    return;
  }
  while (ram_used_ + data->size() > ram_capacity_ && !ram_lru_.empty()) {
    auto victim = ram_.find(ram_lru_.back());
    ram_used_ -= victim->second.data->size();
    ram_.erase(victim);
    ram_lru_.pop_back();
    ++stats_.ram_evictions;
  }
  ram_lru_.push_front(key);
  ram_used_ += data->size();
  stats_.ram_bytes_written += data->size();
  ram_.emplace(key, RamBlock{std::move(data), ram_lru_.begin()});
}

std::shared_ptr<const std::vector<std::byte>> KVStore::ram_get(const BlockKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ram_capacity_ == 0) return nullptr;
  auto it = ram_.find(key);
  if (it == ram_.end()) {
    ++stats_.ram_misses;
    return nullptr;
  }
  ++stats_.ram_hits;
  ram_lru_.splice(ram_lru_.begin(), ram_lru_, it->second.lru);
  return it->second.data;
}

std::vector<Tier> KVStore::locate(std::span<const BlockKey> keys) {
  std::vector<Tier> out;
  for (const BlockKey& k : keys) {
    bool in_ram = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_ram = ram_.count(k) > 0;
    }
    if (in_ram) out.push_back(Tier::kRam);
    else if (disk_ && disk_->contains(k)) out.push_back(Tier::kDisk);
    else break;
  }
  return out;
}

void KVStore::store(std::shared_ptr<StoreJob> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    to_copy_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void KVStore::load(std::shared_ptr<LoadJob> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    (job->dest.empty() ? to_prefetch_ : to_load_).push_back(std::move(job));
  }
  cv_.notify_all();
}

void KVStore::cancel(LoadJob& job) {
  job.cancel.store(true);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(to_load_.begin(), to_load_.end(), [&](const auto& j) { return j.get() == &job; });
  if (it == to_load_.end()) return;  // running (it stops after its block) or done
  to_load_.erase(it);
  job.done.store(true);
}

bool KVStore::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return to_copy_.empty() && to_write_.empty() && writing_ == 0; });
  const uint64_t failures = stats_.write_failures;
  const bool ok = failures == failures_at_flush_;
  failures_at_flush_ = failures;
  return ok;
}

void KVStore::writer_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !to_copy_.empty() || !to_write_.empty(); });
    // Copies first (they hold pool blocks pinned), while the disk keeps up; past the queue's
    // limit the jobs wait, pinned, until writes have made room.
    if (!to_copy_.empty() && (to_write_bytes_ < kWriteQueueBytes || !disk_)) {
      std::shared_ptr<StoreJob> job = std::move(to_copy_.front());
      to_copy_.pop_front();
      ++writing_;
      lock.unlock();
      try {
        bool in_ram = false;
        {
          std::lock_guard<std::mutex> l(mu_);
          auto it = ram_.find(job->key);
          in_ram = it != ram_.end();
          if (in_ram) ram_lru_.splice(ram_lru_.begin(), ram_lru_, it->second.lru);
        }
        const bool on_disk = !disk_ || disk_->contains(job->key);
        if (!((in_ram || ram_capacity_ == 0) && on_disk)) {
          size_t n = 0;
          for (const auto& p : job->pieces) n += p.size();
          auto buf = std::make_shared<std::vector<std::byte>>(n);
          size_t at = 0;
          for (const auto& p : job->pieces) {
            std::memcpy(buf->data() + at, p.data(), p.size());
            at += p.size();
          }
          std::lock_guard<std::mutex> l(mu_);
          if (!in_ram) ram_put(job->key, buf);
          if (!on_disk) {
            to_write_bytes_ += n;
            to_write_.emplace_back(job->key, std::move(buf));
          }
        }
      } catch (const std::exception&) {  // out of memory for the copy: the block is not stored
        std::lock_guard<std::mutex> l(mu_);
        ++stats_.write_failures;
      }
      job->copied.store(true);  // the engine may unpin the block now
      lock.lock();
      --writing_;
    } else if (!to_write_.empty()) {
      auto [key, buf] = std::move(to_write_.front());
      to_write_.pop_front();
      ++writing_;
      lock.unlock();
      const std::span<const std::byte> piece(buf->data(), buf->size());
      bool ok = false;
      try {
        ok = disk_->write(key, std::span<const std::span<const std::byte>>(&piece, 1));
      } catch (const std::exception&) {
      }
      lock.lock();
      if (!ok) ++stats_.write_failures;
      --writing_;
      to_write_bytes_ -= buf->size();
    } else if (stop_) {
      break;
    }
    if (to_copy_.empty() && to_write_.empty() && writing_ == 0) idle_cv_.notify_all();
  }
}

void KVStore::loader_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !to_load_.empty() || !to_prefetch_.empty(); });
    auto& queue = !to_load_.empty() ? to_load_ : to_prefetch_;
    if (queue.empty()) break;  // stopping
    auto job = std::move(queue.front());
    queue.pop_front();
    const bool stopping = stop_;
    lock.unlock();
    try {
      if (!stopping) run_load(*job);  // a job left at shutdown ends with nothing loaded
    } catch (const std::exception&) {  // out of memory, say: what loaded so far stands
    }
    job->done.store(true);
    if (job->on_done) job->on_done();
    lock.lock();
  }
}

void KVStore::run_load(LoadJob& job) {
  const auto t0 = Clock::now();
  const bool prefetch = job.dest.empty();
  const size_t block_bytes = job.block_bytes;
  // The disk reads ahead of the loop: a window of blocks is always on its way.
  constexpr size_t kReadAhead = 32;
  size_t advised = 0;
  for (size_t i = 0; i < job.keys.size() && !job.cancel.load(); ++i) {
    if (disk_)
      for (; advised < std::min(job.keys.size(), i + kReadAhead); ++advised) disk_->advise(job.keys[advised]);
    const auto tb = Clock::now();
    const BlockKey& key = job.keys[i];
    if (auto buf = ram_get(key)) {
      if (!prefetch) {
        if (buf->size() != block_bytes) break;
        size_t at = 0;
        for (const auto& p : job.dest[i]) {
          std::memcpy(p.data(), buf->data() + at, p.size());
          at += p.size();
        }
      }
      ++job.from_ram;
      std::lock_guard<std::mutex> lock(mu_);
      stats_.ram_bytes_read += buf->size();
      stats_.ram_load_seconds.observe(since(tb));
    } else if (disk_) {
      DiskTier::Read r;
      if (prefetch) {
        if (!has_ram() || block_bytes == 0) break;
        auto buf2 = std::make_shared<std::vector<std::byte>>(block_bytes);
        const std::span<std::byte> piece(buf2->data(), buf2->size());
        r = disk_->read(key, std::span<const std::span<std::byte>>(&piece, 1));
        if (r == DiskTier::Read::kOk) {
          std::lock_guard<std::mutex> lock(mu_);
          ram_put(key, std::move(buf2));
        }
      } else {
        r = disk_->read(key, job.dest[i]);
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (r != DiskTier::Read::kOk) {
        ++stats_.disk_misses;
        break;
      }
      ++stats_.disk_hits;
      stats_.disk_load_seconds.observe(since(tb));
      ++job.from_disk;
    } else {
      break;
    }
    ++job.loaded;
  }
  job.seconds = since(t0);
}

KVStoreStats KVStore::stats() const {
  KVStoreStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
    s.ram_blocks = int64_t(ram_.size());
    s.ram_bytes = int64_t(ram_used_);
  }
  if (disk_) s.disk_counters = disk_->counters();
  return s;
}

}  // namespace whale
