#include "runtime/kv_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "runtime/block_key.h"
#include "runtime/engine.h"
#include "runtime/kv_store.h"

namespace whale {

namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<int32_t> random_prompt(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(3 + g() % uint64_t(std::min<int64_t>(vocab, 30000) - 3));
  return t;
}

EngineRequest first_token(std::vector<int32_t> prompt) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.options.max_tokens = 1;
  r.options.sampling.temperature = 0;
  r.options.ignore_eos = true;
  r.parse = false;
  r.top_logprobs = 1;
  return r;
}

// The block files' pages leave the page cache, so the next read comes from the device.
void drop_page_cache(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

struct Timed {
  RequestOutput out;
  double seconds;
};
Timed timed_run(Engine& e, const std::vector<int32_t>& prompt) {
  const auto t0 = Clock::now();
  RequestOutput out = e.run(first_token(prompt));
  if (!out.error.empty()) fail("kv bench: ", out.error);
  return {std::move(out), since(t0)};
}
}  // namespace

double measure_disk_read_bandwidth(const std::string& dir, size_t bytes) {
  const std::string path = dir + "/bandwidth-probe.tmp";
  std::vector<char> buf(size_t(4) << 20);
  std::mt19937 g(1);
  for (auto& c : buf) c = char(g());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WHALE_CHECK(fd >= 0, path, ": cannot write: ", std::strerror(errno));
  for (size_t done = 0; done < bytes; done += buf.size())
    WHALE_CHECK(::write(fd, buf.data(), buf.size()) == ssize_t(buf.size()), path, ": write failed");
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<char> in(size_t(1) << 20);
  const auto t0 = Clock::now();
  size_t got = 0;
  for (ssize_t n; (n = ::read(fd, in.data(), in.size())) > 0;) got += size_t(n);
  const double s = since(t0);
  ::close(fd);
  ::unlink(path.c_str());
  return double(got) / s;
}

KVBenchResult bench_in(Model& model, const KVBenchOptions& o);

KVBenchResult bench_kv_tiers(Model& model, const KVBenchOptions& o) {
  WHALE_CHECK(!o.disk_dir.empty(), "kv bench: a disk directory is needed (--kv-tiers DIR)");
  // A fresh directory of its own inside DIR, removed at the end.
  std::error_code ec;
  fs::create_directories(o.disk_dir, ec);
  std::string tmpl = o.disk_dir + "/whale-kv-bench-XXXXXX";
  WHALE_CHECK(::mkdtemp(tmpl.data()), o.disk_dir, ": cannot create a directory in it: ", std::strerror(errno));
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{tmpl};
  KVBenchOptions opts = o;
  opts.disk_dir = tmpl;
  return bench_in(model, opts);
}

KVBenchResult bench_in(Model& model, const KVBenchOptions& o) {
  KVBenchResult r;
  r.prompt_tokens = o.prompt_tokens;
  r.disk_sequential_bw = measure_disk_read_bandwidth(o.disk_dir);
  const Digest identity = model_identity(model);
  const int64_t vocab = model.config().vocab_size;

  EngineConfig c;
  c.parallel = 1;
  c.ctx = o.prompt_tokens + 16;
  c.prefill_chunk = 512;
  c.model_identity = identity;
  const std::vector<int32_t> prompt = random_prompt(o.prompt_tokens, vocab, 42);
  KVStoreOptions so;
  so.disk_dir = o.disk_dir;
  so.ram_bytes = uint64_t(1) << 40;  // everything fits: this part measures each tier alone
  Timed cold, pool, ram, disk;
  {
    auto store = std::make_shared<KVStore>(so);
    {
      Engine e(model, nullptr, [&] { EngineConfig x = c; x.store = store; return x; }());
      cold = timed_run(e, prompt);
      store->flush();
      pool = timed_run(e, prompt);
    }
    Engine e(model, nullptr, [&] { EngineConfig x = c; x.store = store; return x; }());
    ram = timed_run(e, prompt);
    const KVStoreStats st = store->stats();
    r.blocks = st.ram_blocks;
    r.block_bytes = st.ram_blocks ? st.ram_bytes / st.ram_blocks : 0;
  }
  drop_page_cache(o.disk_dir);
  {
    so.ram_bytes = 0;  // a restart: only the directory is left
    auto store = std::make_shared<KVStore>(so);
    Engine e(model, nullptr, [&] { EngineConfig x = c; x.store = store; return x; }());
    disk = timed_run(e, prompt);
    r.disk_read_bytes = store->stats().disk_counters.read_bytes;
  }
  r.cold = cold.seconds;
  r.pool = pool.seconds;
  r.ram = ram.seconds;
  r.disk = disk.seconds;
  r.cached_pool = pool.out.stats.cached_tokens;
  r.cached_ram = ram.out.stats.cached_ram_tokens;
  r.cached_disk = disk.out.stats.cached_disk_tokens;
  r.disk_load_seconds = disk.out.stats.cache_load_seconds;
  for (const Timed* t : {&pool, &ram, &disk}) {
    const bool same = t->out.tokens == cold.out.tokens && t->out.logprobs.size() == cold.out.logprobs.size() &&
                      t->out.logprobs[0].logprob == cold.out.logprobs[0].logprob;
    if (!same && std::getenv("WHALE_KV_BENCH_VERBOSE"))
      std::fprintf(stderr, "kv bench: %s hit: token %d logprob %.9g, cold: token %d logprob %.9g\n",
                   t == &pool ? "pool" : t == &ram ? "ram" : "disk", t->out.tokens.empty() ? -1 : t->out.tokens[0],
                   t->out.logprobs.empty() ? 0.0 : t->out.logprobs[0].logprob, cold.out.tokens.empty() ? -1 : cold.out.tokens[0],
                   cold.out.logprobs.empty() ? 0.0 : cold.out.logprobs[0].logprob);
    r.outputs_equal = r.outputs_equal && same;
  }

  if (o.sessions > 0) {  // sessions whose caches do not all fit in RAM
    r.sessions = o.sessions;
    r.session_tokens = o.session_tokens;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < o.sessions; ++i) prompts.push_back(random_prompt(o.session_tokens, vocab, 1000 + uint64_t(i)));
    EngineConfig sc = c;
    sc.parallel = o.session_parallel;
    sc.ctx = o.session_tokens + 16;
    sc.kv_tokens = sc.ctx * o.session_parallel;
    so.ram_bytes = uint64_t(r.block_bytes) * uint64_t(o.session_tokens / 16) * uint64_t(o.sessions) / 2;  // half of them
    r.ram_capacity = so.ram_bytes;
    auto store = std::make_shared<KVStore>(so);
    auto run_all = [&](Engine& e, std::vector<double>& ttft, std::vector<RequestOutput>* outs) {
      std::vector<std::shared_ptr<RequestHandle>> hs;
      const auto t0 = Clock::now();
      for (const auto& p : prompts) hs.push_back(e.submit(first_token(p)));
      for (auto& h : hs) {
        RequestOutput out = h->wait_finished();
        ttft.push_back(since(t0));
        if (outs) outs->push_back(std::move(out));
      }
    };
    std::vector<RequestOutput> cold_outs, resumed;
    {
      Engine e(model, nullptr, [&] { EngineConfig x = sc; x.store = store; return x; }());
      run_all(e, r.session_cold, &cold_outs);
      store->flush();
    }
    drop_page_cache(o.disk_dir);
    Engine e(model, nullptr, [&] { EngineConfig x = sc; x.store = store; return x; }());  // a new pool; RAM holds some
    run_all(e, r.session_resumed, &resumed);
    for (size_t i = 0; i < resumed.size(); ++i) {
      const GenerationStats& s = resumed[i].stats;
      r.resumed_ram_tokens += s.cached_ram_tokens;
      r.resumed_disk_tokens += s.cached_disk_tokens;
      r.resumed_computed_tokens += s.prompt_tokens - s.cached_tokens;
      r.outputs_equal = r.outputs_equal && resumed[i].tokens == cold_outs[i].tokens;
      if (std::getenv("WHALE_KV_BENCH_VERBOSE"))
        std::fprintf(stderr, "kv bench: session %zu: cached %lld (ram %lld, disk %lld), token %d vs cold %d %s\n", i,
                     (long long)s.cached_tokens, (long long)s.cached_ram_tokens, (long long)s.cached_disk_tokens,
                     resumed[i].tokens.empty() ? -1 : resumed[i].tokens[0], cold_outs[i].tokens.empty() ? -1 : cold_outs[i].tokens[0], resumed[i].error.c_str());
    }
  }
  return r;
}

}  // namespace whale
