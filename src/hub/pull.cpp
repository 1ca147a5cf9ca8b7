#include "hub/pull.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "core/durable.h"
#include "core/error.h"
#include "core/sha256.h"

namespace whale {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What a safetensors model folder needs from a repository's top level.
bool safetensors_model_file(const std::string& path) {
  if (path.find('/') != std::string::npos) return false;  // inference code, originals, figures
  const std::string p = lower(path);
  return ends_with(p, ".safetensors") || ends_with(p, ".json") || ends_with(p, ".jinja") || p == "tokenizer.model" ||
         p.rfind("license", 0) == 0;
}

// "DeepSeek-V3-Q4_K_M-00002-of-00009.gguf" -> set stem "DeepSeek-V3-Q4_K_M", part 2 of 9.
struct GgufName {
  std::string stem;
  int part = 0, count = 0;
};
GgufName gguf_name(const std::string& path) {
  static const std::regex split(R"((.*)-(\d{5})-of-(\d{5})\.gguf)", std::regex::icase);
  std::smatch m;
  if (std::regex_match(path, m, split)) return {m[1].str(), std::stoi(m[2].str()), std::stoi(m[3].str())};
  return {path.substr(0, path.size() - 5), 0, 0};
}

// The tag occurs in the path as a word: not inside a longer tag (Q4_K in Q4_K_M, Q4 in IQ4).
bool has_tag(const std::string& path, const std::string& tag) {
  const std::string p = lower(path), t = lower(tag);
  for (size_t at = p.find(t); at != std::string::npos; at = p.find(t, at + 1)) {
    const bool left = at == 0 || !std::isalnum(static_cast<unsigned char>(p[at - 1]));
    const size_t end = at + t.size();
    const bool right = end == p.size() || !(std::isalnum(static_cast<unsigned char>(p[end])) || p[end] == '_');
    if (left && right) return true;
  }
  return false;
}

std::string list_some(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 12; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 12) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

}  // namespace

std::vector<HubFile> select_model_files(const HubRepo& repo, ModelRef& ref, std::string* format) {
  std::vector<HubFile> out;
  const bool has_safetensors = std::any_of(repo.files.begin(), repo.files.end(), [](const HubFile& f) {
    return f.path.find('/') == std::string::npos && ends_with(lower(f.path), ".safetensors");
  });
  if (ref.quant.empty() && has_safetensors) {
    for (const HubFile& f : repo.files)
      if (safetensors_model_file(f.path)) out.push_back(f);
    if (std::none_of(out.begin(), out.end(), [](const HubFile& f) { return f.path == "config.json"; }))
      fail(repo.id, ": has safetensors files but no config.json");
    *format = "safetensors";
    return out;
  }
  std::vector<const HubFile*> ggufs, projectors;
  for (const HubFile& f : repo.files)
    if (ends_with(lower(f.path), ".gguf")) (lower(f.path).find("mmproj") != std::string::npos ? projectors : ggufs).push_back(&f);
  if (ggufs.empty()) {
    std::vector<std::string> names;
    for (const HubFile& f : repo.files) names.push_back(f.path);
    fail(repo.id, ": no ", ref.quant.empty() ? "safetensors or GGUF" : "GGUF", " model files (it has: ", list_some(names), ")");
  }
  // Which sets (single files or split sets) the tag picks.
  std::string tag = ref.quant;
  auto pick = [&](const std::string& t) {
    std::vector<const HubFile*> hits;
    for (const HubFile* f : ggufs) {
      const bool hit = ends_with(lower(t), ".gguf") ? (f->path == t || fs::path(f->path).filename() == t ||
                                                        gguf_name(f->path).stem == gguf_name(t).stem)
                                                     : has_tag(f->path, t);
      if (hit) hits.push_back(f);
    }
    return hits;
  };
  std::vector<const HubFile*> hits;
  if (tag.empty()) {
    std::set<std::string> stems;
    for (const HubFile* f : ggufs) stems.insert(gguf_name(f->path).stem);
    if (stems.size() == 1) hits = ggufs;
    else if (!(hits = pick("Q4_K_M")).empty()) tag = "Q4_K_M";  // llama.cpp's default too
  } else {
    hits = pick(tag);
  }
  std::set<std::string> stems;
  for (const HubFile* f : hits) stems.insert(gguf_name(f->path).stem);
  if (stems.size() != 1) {
    std::vector<std::string> names;
    for (const HubFile* f : (hits.empty() ? ggufs : hits)) names.push_back(f->path);
    if (hits.empty() && tag.empty())
      fail(repo.id, ": has several GGUF models; name one as ", repo.id, ":QUANT (files: ", list_some(names), ")");
    if (hits.empty()) fail(repo.id, ": no GGUF file matches '", tag, "' (files: ", list_some(names), ")");
    fail(repo.id, ": '", tag, "' matches several GGUF models; name the file as ", repo.id, ":FILE.gguf (", list_some(names), ")");
  }
  std::sort(hits.begin(), hits.end(), [](const HubFile* a, const HubFile* b) { return a->path < b->path; });
  const GgufName first = gguf_name(hits.front()->path);
  if (first.count > 0) {  // a split set: every part, once
    std::set<int> parts;
    for (const HubFile* f : hits) {
      const GgufName g = gguf_name(f->path);
      if (g.count != first.count) fail(repo.id, ": the split GGUF set ", first.stem, " has parts of different counts");
      parts.insert(g.part);
    }
    if (int(parts.size()) != first.count || *parts.begin() != 1 || *parts.rbegin() != first.count)
      fail(repo.id, ": the split GGUF set ", first.stem, " is incomplete (", parts.size(), " of ", first.count, " parts)");
  } else if (hits.size() != 1) {
    fail(repo.id, ": '", tag, "' matches ", hits.size(), " files of one name");
  }
  for (const HubFile* f : hits) out.push_back(*f);
  if (!projectors.empty()) {  // multimodal projector: the tag's, else F16, else BF16, else the first
    const HubFile* p = nullptr;
    for (const char* t : {tag.c_str(), "F16", "BF16"})
      for (const HubFile* f : projectors)
        if (!p && *t && has_tag(f->path, t)) p = f;
    out.push_back(p ? *p : *projectors.front());
  }
  if (ref.quant.empty()) ref.quant = tag.empty() ? first.stem.substr(first.stem.rfind('/') + 1) : tag;
  *format = "gguf";
  return out;
}

namespace {

// One file being downloaded into STAGING/PATH.part, with its chunk log PATH.part.log: a header
// line naming the content and chunk size, then the index of each chunk written and synced.
struct FileJob {
  HubFile f;
  std::string url, final_path, part, log;
  int fd = -1, log_fd = -1;
  uint64_t chunk = 0;
  std::vector<char> chunk_done;
  std::atomic<uint64_t> done{0};
  std::atomic<int> remaining{0};
  std::atomic<bool> verified{false};
  // SHA-256 of the chunks [0, hashed), fed in order as chunks arrive (hasher thread only).
  Sha256 hash;
  std::vector<char> arrived;
  std::atomic<uint64_t> hashed{0};
  std::mutex finish_mu;
  bool finishing = false;

  std::string header() const {
    return "whale-pull 1 " + (f.sha256.empty() ? "sha1:" + f.git_sha1 : "sha256:" + f.sha256) + " " + std::to_string(f.size) +
           " " + std::to_string(chunk) + "\n";
  }
  uint64_t n_chunks() const { return f.size == 0 ? 0 : (f.size + chunk - 1) / chunk; }
  uint64_t chunk_size(uint64_t c) const { return std::min(chunk, f.size - c * chunk); }
  ~FileJob() {
    if (fd >= 0) ::close(fd);
    if (log_fd >= 0) ::close(log_fd);
  }
};

std::string io_error(const std::string& path, int err) {
  if (err == ENOSPC) return path + ": the disk is full (" + std::strerror(err) + ")";
  return path + ": " + std::strerror(err);
}

void write_all(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(io_error(path, w < 0 ? errno : ENOSPC));
    data += w, n -= size_t(w);
  }
}

// Opens (or resumes) a file's partial download.
void open_partial(FileJob& j) {
  fs::create_directories(fs::path(j.final_path).parent_path());
  j.chunk_done.assign(j.n_chunks(), 0);
  std::ifstream in(j.log);
  std::string line;
  bool resume = in && std::getline(in, line) && line + "\n" == j.header();
  if (resume) {
    while (std::getline(in, line)) {
      if (in.eof() && !line.empty() && line.back() != '\n') {}  // getline drops '\n'; a cut line fails stoull below
      char* end = nullptr;
      const unsigned long long c = std::strtoull(line.c_str(), &end, 10);
      if (end == line.c_str() || *end != 0 || c >= j.n_chunks()) continue;  // a line cut by a crash
      j.chunk_done[c] = 1;
    }
  }
  struct stat st {};
  if (resume && ::stat(j.part.c_str(), &st) != 0) resume = false;  // log without data
  if (!resume) {
    std::fill(j.chunk_done.begin(), j.chunk_done.end(), 0);
    ::unlink(j.part.c_str());
    write_file_synced(j.log, j.header());
  }
  j.fd = ::open(j.part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (j.fd < 0) fail(io_error(j.part, errno));
  j.log_fd = ::open(j.log.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (j.log_fd < 0) fail(io_error(j.log, errno));
  uint64_t done = 0;
  int remaining = 0;
  for (uint64_t c = 0; c < j.n_chunks(); ++c) {
    if (j.chunk_done[c]) done += j.chunk_size(c);
    else ++remaining;
  }
  j.done = done;
  j.remaining = remaining;
}

// The content's hash as the Hub lists it.
std::string file_digest(const std::string& path, const HubFile& f) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(io_error(path, errno));
  std::vector<char> buf(4 << 20);
  std::string out;
  if (!f.sha256.empty()) {
    Sha256 h;
    for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0;) h.update(buf.data(), size_t(n));
    out = h.finish().hex();
  } else {
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr);
    const std::string head = "blob " + std::to_string(f.size) + std::string(1, '\0');
    EVP_DigestUpdate(ctx.get(), head.data(), head.size());
    for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0;) EVP_DigestUpdate(ctx.get(), buf.data(), size_t(n));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &len);
    static const char* hex = "0123456789abcdef";
    for (unsigned i = 0; i < len; ++i) out += hex[md[i] >> 4], out += hex[md[i] & 15];
  }
  ::close(fd);
  return out;
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An exclusive lock on a model's pull, released when the process ends (however it ends).
struct PullLock {
  int fd = -1;
  PullLock(const std::string& path, const std::string& name) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail(io_error(path, errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      fail("another `whale pull` of ", name, " is running (", path, " is locked); wait for it to finish");
    }
  }
  ~PullLock() { ::close(fd); }
};

}  // namespace

StoredModel pull_model(const ModelStore& store, ModelRef ref, const HubClient& hub, const PullOptions& o,
                       const PullProgressFn& progress, const std::atomic<bool>* cancel) {
  WHALE_CHECK(o.connections >= 1 && o.connections <= 64, "connections must be 1..64 (got ", o.connections, ")");
  WHALE_CHECK(o.chunk_bytes >= 4096, "the chunk size must be at least 4 KiB");
  PullProgress P;
  progress(P);
  const HubRepo repo = hub.repo(ref.repo, ref.revision);
  std::string format;
  const std::vector<HubFile> files = select_model_files(repo, ref, &format);
  // A repository pulled without a tag is named by the tag it defaulted to.
  if (ref.name.empty() || ref.name == ref.repo) ref.name = ref.quant.empty() || format != "gguf" ? ref.repo : ref.repo + ":" + ref.quant;
  const std::string key = ref.key();
  for (const HubFile& f : files) {
    P.files.push_back({f.path, f.sha256.empty() ? "sha1:" + f.git_sha1 : "sha256:" + f.sha256, f.size, 0, false});
    P.total += f.size;
  }
  StoredModel m;
  m.key = key;
  m.name = ref.name;
  m.repo = repo.id;
  m.revision = ref.revision;
  m.commit = repo.commit;
  m.quant = format == "gguf" ? ref.quant : "";
  m.format = format;
  m.dir = store.model_dir(key);
  m.bytes = P.total;
  for (const HubFile& f : files) m.files.push_back({f.path, f.size, f.sha256, f.git_sha1});
  const std::optional<StoredModel> existing = store.get(key);
  if (existing && existing->commit == repo.commit) {
    P.up_to_date = true;
    P.stage = PullProgress::Done;
    P.done = P.total;
    for (auto& f : P.files) f.done = f.size, f.verified = true;
    progress(P);
    return *existing;
  }

  std::error_code ec;
  fs::create_directories(store.root() + "/partial", ec);
  fs::create_directories(store.root() + "/models", ec);
  if (ec) fail("cannot create the model store at ", store.root(), ": ", ec.message());
  PullLock lock(store.partial_dir(key) + ".lock", ref.name);
  const std::string staging = store.partial_dir(key);
  fs::create_directories(staging, ec);
  if (ec) fail("cannot create ", staging, ": ", ec.message());

  // Files an earlier, interrupted pull finished keep their names in staging: they count if that
  // pull was of this commit, else only if their content still matches the listing.
  const std::string marker = staging + "/.whale-pull-commit";
  std::string staged_commit;
  {
    std::ifstream in(marker);
    std::getline(in, staged_commit);
  }
  const bool same_commit = staged_commit == repo.commit;
  if (!same_commit) write_file_synced(marker, repo.commit);

  // Each file: already verified in staging, reusable from the stored older commit, or to fetch.
  std::vector<std::unique_ptr<FileJob>> jobs;
  uint64_t needed = 0;
  for (const HubFile& f : files) {
    auto j = std::make_unique<FileJob>();
    j->f = f;
    j->url = hub.resolve_url(repo, f.path);
    j->final_path = staging + "/" + f.path;
    j->part = j->final_path + ".part";
    j->log = j->final_path + ".part.log";
    j->chunk = std::max<uint64_t>(o.chunk_bytes, 1);
    if (fs::exists(j->final_path, ec) && fs::file_size(j->final_path, ec) == f.size &&
        (same_commit || file_digest(j->final_path, f) == (f.sha256.empty() ? f.git_sha1 : f.sha256))) {
      j->done = f.size;
      j->verified = true;
    } else if (fs::remove(j->final_path, ec); existing) {
      for (const StoredFile& sf : existing->files)
        if (sf.path == f.path && sf.size == f.size && sf.sha256 == f.sha256 && sf.git_sha1 == f.git_sha1) {
          fs::create_directories(fs::path(j->final_path).parent_path(), ec);
          fs::create_hard_link(existing->dir + "/" + f.path, j->final_path, ec);
          if (!ec) j->done = f.size, j->verified = true;
        }
    }
    if (!j->verified) {
      open_partial(*j);
      if (j->done) P.resumed = true;
      struct stat st {};
      const uint64_t allocated = ::fstat(j->fd, &st) == 0 ? uint64_t(st.st_blocks) * 512 : 0;
      if (allocated < f.size) needed += f.size - allocated;
    }
    jobs.push_back(std::move(j));
  }
  struct statvfs vfs {};
  if (::statvfs(staging.c_str(), &vfs) == 0) {
    const uint64_t free_bytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
    if (needed > free_bytes)
      fail("not enough disk space for ", ref.name, ": it needs ", format_bytes(needed), " more and ", store.root(), " has ",
           format_bytes(free_bytes), " free (set WHALE_MODELS to a larger disk)");
  }
  for (auto& j : jobs) {  // reserve the space now: a full disk fails here, not hours in
    if (j->verified || j->f.size == 0) continue;
    const int rc = ::posix_fallocate(j->fd, 0, off_t(j->f.size));
    if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) fail(io_error(j->part, rc), " (reserving ", format_bytes(j->f.size), ")");
  }

  // Work: every chunk still missing, in file order.
  std::vector<std::pair<FileJob*, uint64_t>> work;
  for (auto& j : jobs)
    if (!j->verified)
      for (uint64_t c = 0; c < j->n_chunks(); ++c)
        if (!j->chunk_done[c]) work.emplace_back(j.get(), c);
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> fetched{0};
  std::mutex err_mu;
  std::string first_error;
  auto set_error = [&](const std::string& e) {
    std::lock_guard<std::mutex> g(err_mu);
    if (first_error.empty()) first_error = e;
    stop = true;
  };
  auto stopping = [&] { return stop.load() || (cancel && cancel->load()); };

  auto finish_file = [&](FileJob& j) {
    if (::fsync(j.fd) != 0) fail(io_error(j.part, errno));
    const std::string got = !j.f.sha256.empty() && j.hashed == j.n_chunks() ? j.hash.finish().hex() : file_digest(j.part, j.f);
    const std::string want = j.f.sha256.empty() ? j.f.git_sha1 : j.f.sha256;
    if (got != want) {
      ::unlink(j.part.c_str());
      ::unlink(j.log.c_str());
      fail(j.f.path, ": checksum mismatch (", j.f.sha256.empty() ? "git blob " : "sha256 ", "expected ", want, ", got ", got,
           "); the damaged download was deleted, `whale pull ", ref.name, "` fetches it again");
    }
    if (::rename(j.part.c_str(), j.final_path.c_str()) != 0) fail(io_error(j.final_path, errno));
    ::unlink(j.log.c_str());
    j.verified = true;
  };
  for (auto& j : jobs)  // empty files, and files whose chunks were all fetched before a crash
    if (!j->verified && j->remaining == 0) finish_file(*j);

  // Two stages after a chunk's download, each on a thread of its own so that no connection
  // waits for the disk or the hash: the syncer makes the chunk durable and logs it; the hasher
  // feeds each file's SHA-256 in order, reading chunks back (from the page cache) as they become
  // contiguous. Whichever finishes a file's last step verifies and names it. Chunks already
  // downloaded are committed even after a failure elsewhere (a later pull resumes from them).
  struct Stage {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<FileJob*, uint64_t>> q;
    bool closed = false;
    void push(FileJob* j, uint64_t c) {
      {
        std::lock_guard<std::mutex> g(mu);
        q.emplace_back(j, c);
      }
      cv.notify_one();
    }
    void close() {
      {
        std::lock_guard<std::mutex> g(mu);
        closed = true;
      }
      cv.notify_one();
    }
    bool pop(std::pair<FileJob*, uint64_t>* out) {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return !q.empty() || closed; });
      if (q.empty()) return false;
      *out = q.front();
      q.pop_front();
      return true;
    }
  } sync_stage, hash_stage;
  auto maybe_finish = [&](FileJob& j) {
    std::lock_guard<std::mutex> g(j.finish_mu);
    if (j.finishing || j.remaining != 0 || (!j.f.sha256.empty() && j.hashed != j.n_chunks())) return;
    j.finishing = true;
    finish_file(j);
  };
  auto sync_chunk = [&](FileJob& j, uint64_t c) {
    if (::fdatasync(j.fd) != 0) fail(io_error(j.part, errno));
    const std::string line = std::to_string(c) + "\n";
    write_all(j.log_fd, line.data(), line.size(), j.log);
    if (::fdatasync(j.log_fd) != 0) fail(io_error(j.log, errno));
    fault_point("pull_chunk");
    if (--j.remaining == 0) maybe_finish(j);
  };
  std::vector<char> hash_buf;
  auto hash_chunk = [&](FileJob& j, uint64_t c) {
    if (j.f.sha256.empty()) return;  // small git files: hashed whole when complete
    j.arrived[c] = 1;
    while (j.hashed < j.n_chunks() && j.arrived[j.hashed]) {
      hash_buf.resize(size_t(std::min<uint64_t>(j.chunk, 4 << 20)));
      const uint64_t begin = j.hashed * j.chunk, end = begin + j.chunk_size(j.hashed);
      for (uint64_t pos = begin; pos < end;) {
        const ssize_t n = ::pread(j.fd, hash_buf.data(), size_t(std::min<uint64_t>(hash_buf.size(), end - pos)), off_t(pos));
        if (n <= 0) fail(io_error(j.part, n < 0 ? errno : EIO));
        j.hash.update(hash_buf.data(), size_t(n));
        pos += uint64_t(n);
      }
      ++j.hashed;
    }
    if (j.hashed == j.n_chunks()) maybe_finish(j);
  };
  auto run_stage = [&](Stage& st, const std::function<void(FileJob&, uint64_t)>& step) {
    bool failed = false;
    for (std::pair<FileJob*, uint64_t> item; st.pop(&item);) {
      if (failed) continue;
      try {
        step(*item.first, item.second);
      } catch (const std::exception& e) {
        set_error(e.what());
        failed = true;
      }
    }
  };
  for (auto& j : jobs) j->arrived = j->chunk_done;  // chunks of earlier pulls are hashed from disk
  std::thread syncer([&] { run_stage(sync_stage, sync_chunk); });
  std::thread hasher([&] { run_stage(hash_stage, hash_chunk); });

  auto worker = [&] {
    try {
      for (size_t w; !stopping() && (w = next.fetch_add(1)) < work.size();) {
        FileJob& j = *work[w].first;
        const uint64_t c = work[w].second;
        const uint64_t begin = c * j.chunk, end = begin + j.chunk_size(c);
        uint64_t pos = begin;
        int write_errno = 0;
        for (int attempt = 0; pos < end && !stopping(); ++attempt) {
          try {
            http_get_range(j.url, pos, end, hub.http(), [&](const char* d, size_t n) {
              if (stopping()) return false;
              while (n > 0) {
                const ssize_t wr = ::pwrite(j.fd, d, n, off_t(pos));
                if (wr < 0 && errno == EINTR) continue;
                if (wr <= 0) {
                  write_errno = wr < 0 ? errno : ENOSPC;
                  return false;
                }
                d += wr, n -= size_t(wr), pos += uint64_t(wr);
                j.done += uint64_t(wr);
                fetched += uint64_t(wr);
              }
              return true;
            });
            if (write_errno) fail(io_error(j.part, write_errno));
          } catch (const HttpError& e) {
            // The Hub lists gated repositories to anyone and refuses their files without access.
            if (e.code == "GatedRepo" || e.status == 401 || e.status == 403)
              fail(j.f.path, ": ", repo.id, " is gated or private: accept its terms on ", hub.endpoint(), "/", repo.id,
                   hub.http().bearer_token.empty() ? " and set HF_TOKEN to a token of that account" : " with the account of your HF_TOKEN",
                   " (", e.what(), ")");
            if (!e.transient() || attempt + 1 >= o.attempts) fail(j.f.path, ": ", e.what());
            // 1, 2, 4, 8 s... between attempts, waking early when the pull stops.
            const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(std::min(1 << attempt, 16));
            while (!stopping() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }
        if (pos < end) return;  // stopping
        sync_stage.push(&j, c);
        hash_stage.push(&j, c);
      }
    } catch (const std::exception& e) {
      set_error(e.what());
    }
  };

  P.stage = PullProgress::Downloading;
  const auto t0 = std::chrono::steady_clock::now();
  auto snapshot = [&] {
    P.done = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      P.files[i].done = std::min(jobs[i]->done.load(), jobs[i]->f.size);
      P.files[i].verified = jobs[i]->verified.load();
      P.done += P.files[i].done;
    }
    P.fetched = fetched.load();
    P.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  {
    const int n = int(std::min<size_t>(size_t(o.connections), std::max<size_t>(work.size(), 1)));
    std::vector<std::thread> threads;
    std::atomic<int> running{n};
    std::mutex mu;
    std::condition_variable cv;
    for (int i = 0; i < n; ++i)
      threads.emplace_back([&] {
        worker();
        std::lock_guard<std::mutex> g(mu);
        --running;
        cv.notify_all();
      });
    std::unique_lock<std::mutex> lk(mu);
    while (running > 0) {
      cv.wait_for(lk, std::chrono::milliseconds(250));
      lk.unlock();
      snapshot();
      try {
        progress(P);
      } catch (...) {  // a progress sink that cannot go on (client gone) stops the pull
        stop = true;
      }
      lk.lock();
    }
    lk.unlock();
    for (auto& t : threads) t.join();
    sync_stage.close();
    hash_stage.close();
    syncer.join();
    hasher.join();
  }
  snapshot();
  if (!first_error.empty())
    fail(first_error, first_error.find("whale pull") == std::string::npos
                          ? " (what was downloaded is kept: `whale pull " + ref.name + "` resumes)"
                          : "");
  if (cancel && cancel->load()) fail("the pull of ", ref.name, " was stopped; `whale pull ", ref.name, "` resumes it");
  for (auto& j : jobs)
    if (!j->verified) fail(j->f.path, ": not complete after the pull (", j->remaining.load(), " chunks missing)");

  P.stage = PullProgress::Verifying;
  progress(P);
  m.pulled_at = now_s();
  fs::remove(marker, ec);
  ModelStore::write_manifest(staging, m);
  sync_directory(staging);
  const std::string target = store.model_dir(key);
  if (fs::exists(target, ec)) {  // an older commit: swapped out, then deleted
    const std::string old = store.root() + "/partial/.replaced-" + key;
    fs::remove_all(old, ec);
    fs::rename(target, old, ec);
    if (ec) fail("cannot replace ", target, ": ", ec.message());
    fs::rename(staging, target, ec);
    if (ec) fail("cannot move ", staging, " to ", target, ": ", ec.message());
    fs::remove_all(old, ec);
  } else {
    fs::rename(staging, target, ec);
    if (ec) fail("cannot move ", staging, " to ", target, ": ", ec.message());
  }
  sync_directory(store.root() + "/models");
  fs::remove(staging + ".lock", ec);
  P.stage = PullProgress::Done;
  progress(P);
  auto stored = store.get(key);
  if (!stored) fail(target, ": the model was written but its manifest cannot be read");
  return *stored;
}

}  // namespace whale
