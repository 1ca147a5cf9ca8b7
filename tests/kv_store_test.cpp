// The KV cache's lower tiers: content addresses, the disk tier's file rules (atomic writes,
// verified reads, refusal of damaged or foreign files, sweeping, garbage collection, sharing),
// the RAM tier's LRU, and the engine over them: a hit in RAM or on disk (after a "restart": a
// new store on the same directory) returns exactly what a cold run returns.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <thread>

#include "core/error.h"
#include "runtime/block_key.h"
#include "runtime/engine.h"
#include "runtime/kv_disk.h"
#include "runtime/kv_store.h"
#include "engine_util.h"
#include "test_util.h"

namespace whale {
namespace {

namespace fs = std::filesystem;

std::vector<std::byte> bytes_of(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937 g(seed);
  for (auto& b : v) b = std::byte(g() & 0xff);
  return v;
}

Digest key_of(int i) { return Sha256::of("block " + std::to_string(i)); }

bool write_block(DiskTier& d, const Digest& k, const std::vector<std::byte>& data) {
  const std::span<const std::byte> piece(data);
  return d.write(k, std::span<const std::span<const std::byte>>(&piece, 1));
}

DiskTier::Read read_block(DiskTier& d, const Digest& k, std::vector<std::byte>& out) {
  // Two pieces, as a block of two cache groups would be read.
  const size_t half = out.size() / 3;
  const std::span<std::byte> pieces[2] = {{out.data(), half}, {out.data() + half, out.size() - half}};
  return d.read(k, pieces);
}

TEST(BlockKey, IsASha256ChainOverLittleEndianTokenIds) {
  EXPECT_EQ(Sha256::of("abc").hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Digest root;
  for (int i = 0; i < 32; ++i) root.bytes[size_t(i)] = uint8_t(i);
  const int32_t tokens[] = {1, 2, 3, -1, 70000};
  // hashlib.sha256(root + b"".join(struct.pack("<i", t) for t in tokens)).hexdigest()
  EXPECT_EQ(chain_key(root, tokens).hex(), "75b1a3fd4d2b2b3e5181c1e78aa31254d91d4eba7a695be2f4cd87923c7f07fa");
  const std::vector<int32_t> seq = {5, 6, 7, 8, 9, 10, 11};
  const auto keys = block_keys(root, seq, 3, 10);  // two whole blocks of 3
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0], chain_key(root, std::span(seq).subspan(0, 3)));
  EXPECT_EQ(keys[1], chain_key(keys[0], std::span(seq).subspan(3, 3)));
  // The root separates models, cache formats and block sizes.
  const std::vector<CacheGroupSpec> g = {{"mla_latent", 3, 48}};
  const Digest a = Sha256::of("model a"), b = Sha256::of("model b");
  EXPECT_NE(cache_root(a, g, 16), cache_root(b, g, 16));
  EXPECT_NE(cache_root(a, g, 16), cache_root(a, g, 8));
  EXPECT_NE(cache_root(a, g, 16), cache_root(a, {{"mla_latent", 4, 48}}, 16));
  EXPECT_EQ(cache_root(a, g, 16), cache_root(a, g, 16));
  EXPECT_EQ(Digest::from_hex(a.hex()), a);
  EXPECT_FALSE(Digest::from_hex("xyz"));
}

TEST(BlockKey, ModelIdentityFollowsTheWeightsAndIsRemembered) {
  ThreadPool pool(1);
  auto m = Model::load(test::source_path("models/whale-r2-tiny"), pool);
  test::TempDir memo;
  const Digest plain = model_identity(*m);
  EXPECT_EQ(model_identity(*m, memo.path()), plain);
  size_t memos = 0;
  for (const auto& e : fs::directory_iterator(memo.path())) memos += e.path().extension() == ".weights";
  EXPECT_EQ(memos, 1u);
  EXPECT_EQ(model_identity(*m, memo.path()), plain);  // from the memo

  // A copy whose weights change in place, the modification time put back (cp -p, rsync -t):
  // the memo does not answer for it, and the identity changes.
  test::TempDir copy;
  for (const auto& e : fs::directory_iterator(test::source_path("models/whale-r2-tiny")))
    fs::copy(e.path(), copy / e.path().filename().string());
  EXPECT_EQ(model_identity(*Model::load(copy.path(), pool), memo.path()), plain);
  const std::string weights = copy / "model.safetensors";
  struct stat before {};
  ASSERT_EQ(::stat(weights.c_str(), &before), 0);
  std::string bytes = test::read_file(weights);
  bytes[bytes.size() - 3] ^= 0x01;
  test::write_file(weights, bytes);
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, weights.c_str(), times, 0), 0);
  EXPECT_NE(model_identity(*Model::load(copy.path(), pool), memo.path()), plain);
}

TEST(ByteSize, ParsesUnitsAndRefusesNonsense) {
  EXPECT_EQ(parse_byte_size("0", "x"), 0u);
  EXPECT_EQ(parse_byte_size("1000", "x"), 1000u);
  EXPECT_EQ(parse_byte_size("512M", "x"), uint64_t(512) << 20);
  EXPECT_EQ(parse_byte_size("8GiB", "x"), uint64_t(8) << 30);
  EXPECT_EQ(parse_byte_size("1.5G", "x"), uint64_t(3) << 29);
  EXPECT_EQ(parse_byte_size("2kb", "x"), 2048u);
  for (const char* bad : {"", "abc", "-1", "5Q", "1e30"}) {
    try {
      parse_byte_size(bad, "--kv-ram");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--kv-ram"), std::string::npos);
    }
  }
}

TEST(DiskTier, WritesAtomicallyAndReadsBackVerified) {
  test::TempDir dir;
  DiskTier d(dir.path(), 1 << 30);
  const auto data = bytes_of(3000, 1);
  ASSERT_TRUE(write_block(d, key_of(1), data));
  EXPECT_TRUE(d.contains(key_of(1)));
  EXPECT_FALSE(d.contains(key_of(2)));
  std::vector<std::byte> back(3000);
  EXPECT_EQ(read_block(d, key_of(1), back), DiskTier::Read::kOk);
  EXPECT_EQ(back, data);
  std::vector<std::byte> other(3000);
  EXPECT_EQ(read_block(d, key_of(2), other), DiskTier::Read::kMissing);
  EXPECT_TRUE(fs::is_empty(dir / "tmp"));  // nothing left behind
  const auto file = test::read_file(d.block_path(key_of(1)));
  EXPECT_TRUE(DiskTier::valid_file(std::as_bytes(std::span(file)), key_of(1), 3000));
  EXPECT_FALSE(DiskTier::valid_file(std::as_bytes(std::span(file)), key_of(2), 3000));
  EXPECT_EQ(d.counters().blocks, 1);
  EXPECT_EQ(d.counters().writes, 1u);
  EXPECT_EQ(d.counters().reads, 1u);
}

TEST(DiskTier, RefusesDamagedTruncatedAndForeignFiles) {
  test::TempDir dir;
  DiskTier d(dir.path(), 1 << 30);
  const size_t n = 4096;
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(write_block(d, key_of(i), bytes_of(n, uint32_t(i))));
  auto path = [&](int i) { return d.block_path(key_of(i)); };
  {  // a flipped payload byte
    std::string f = test::read_file(path(0));
    f[DiskTier::kHeaderBytes + 1000] ^= 0x10;
    test::write_file(path(0), f);
  }
  {  // a flipped header byte (the payload size)
    std::string f = test::read_file(path(1));
    f[48] ^= 0x01;
    test::write_file(path(1), f);
  }
  fs::resize_file(path(2), DiskTier::kHeaderBytes + n / 2);  // truncated
  fs::copy_file(path(4), path(3), fs::copy_options::overwrite_existing);  // another block's file
  test::write_file(path(5), "not a block at all");
  std::vector<std::byte> out(n);
  for (int i : {0, 1, 2, 3, 5}) {
    EXPECT_EQ(read_block(d, key_of(i), out), DiskTier::Read::kCorrupt) << i;
    EXPECT_FALSE(fs::exists(path(i))) << i;  // deleted: recomputed, never served
  }
  EXPECT_EQ(d.counters().corrupt, 5u);
  EXPECT_EQ(read_block(d, key_of(4), out), DiskTier::Read::kOk);
  EXPECT_EQ(out, bytes_of(n, 4));
  // A block of another size under the right key is refused too.
  std::vector<std::byte> wrong(n + 4);
  EXPECT_EQ(read_block(d, key_of(4), wrong), DiskTier::Read::kCorrupt);
}

TEST(DiskTier, SweepsStaleTemporariesAndIndexesWhatIsThere) {
  test::TempDir dir;
  {
    DiskTier d(dir.path(), 1 << 30);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(write_block(d, key_of(i), bytes_of(100, uint32_t(i))));
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::string h(host);
  std::replace(h.begin(), h.end(), '.', '_');
  // A writer that is gone (a child that has exited) and a living one (us).
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);
  const std::string gone = dir / ("tmp/" + h + "." + std::to_string(child) + ".ab12.0.tmp");
  test::write_file(gone, "half a block");
  const std::string live = dir / ("tmp/" + h + "." + std::to_string(getpid()) + ".cd34.7.tmp");
  test::write_file(live, "being written");
  DiskTier d(dir.path(), 1 << 30);
  EXPECT_FALSE(fs::exists(gone));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_EQ(d.counters().blocks, 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(d.contains(key_of(i)));
}

TEST(DiskTier, CollectsOldestFirstWithinCapacity) {
  test::TempDir dir;
  const size_t n = 1000, file = n + DiskTier::kHeaderBytes;
  DiskTier d(dir.path(), 10 * file);
  std::vector<std::byte> out(n);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(write_block(d, key_of(i), bytes_of(n, uint32_t(i))));
    timespec t[2] = {{1000 + i, 0}, {1000 + i, 0}};  // modification times in write order
    utimensat(AT_FDCWD, d.block_path(key_of(i)).c_str(), t, 0);
  }
  EXPECT_EQ(read_block(d, key_of(0), out), DiskTier::Read::kOk);  // a hit refreshes block 0
  ASSERT_TRUE(write_block(d, key_of(10), bytes_of(n, 10)));       // over capacity: collect to 90%
  EXPECT_LE(uint64_t(d.counters().bytes), 9 * file);
  EXPECT_TRUE(d.contains(key_of(0)));
  EXPECT_TRUE(d.contains(key_of(10)));
  EXPECT_FALSE(fs::exists(d.block_path(key_of(1))));
  EXPECT_FALSE(fs::exists(d.block_path(key_of(2))));
  EXPECT_GE(d.counters().evictions, 2u);
}

TEST(DiskTier, TwoProcessesShareADirectory) {
  test::TempDir dir;
  DiskTier a(dir.path(), 1 << 30), b(dir.path(), 1 << 30);
  ASSERT_TRUE(write_block(a, key_of(1), bytes_of(500, 1)));
  EXPECT_TRUE(b.contains(key_of(1)));  // not in b's index: found on disk
  std::vector<std::byte> out(500);
  EXPECT_EQ(read_block(b, key_of(1), out), DiskTier::Read::kOk);
  EXPECT_EQ(out, bytes_of(500, 1));
  ASSERT_TRUE(write_block(b, key_of(1), bytes_of(500, 1)));  // the same block again: replaced atomically
  EXPECT_EQ(read_block(a, key_of(1), out), DiskTier::Read::kOk);
}

TEST(DiskTier, CreatesMissingParentsAndSizesItselfFromTheFreeSpace) {
  test::TempDir dir;
  DiskTier d(dir / "a/b/kv", 0);
  EXPECT_TRUE(fs::is_directory(dir / "a/b/kv/blocks"));
  EXPECT_GE(d.capacity(), uint64_t(64) << 20);
  EXPECT_LE(d.capacity(), uint64_t(64) << 30);
}

TEST(DiskTier, LeavesAnotherFormatVersionAlone) {
  test::TempDir dir;
  DiskTier d(dir.path(), 1 << 30);
  ASSERT_TRUE(write_block(d, key_of(1), bytes_of(256, 1)));
  std::string f = test::read_file(d.block_path(key_of(1)));
  f[8] = 2;  // version 2: a later whale's file
  test::write_file(d.block_path(key_of(1)), f);
  std::vector<std::byte> out(256);
  EXPECT_EQ(read_block(d, key_of(1), out), DiskTier::Read::kMissing);
  EXPECT_TRUE(fs::exists(d.block_path(key_of(1))));
  EXPECT_EQ(d.counters().corrupt, 0u);
}

TEST(DiskTier, ErrorsNameTheDirectory) {
  try {
    DiskTier d("/proc/whale-cannot-be-here", 1 << 20);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/whale-cannot-be-here"), std::string::npos) << e.what();
  }
}

TEST(KVStore, RamTierKeepsTheMostRecentBlocks) {
  KVStoreOptions o;
  o.ram_bytes = 3 * 1000;
  KVStore s(o);
  std::vector<std::vector<std::byte>> data;
  for (int i = 0; i < 4; ++i) data.push_back(bytes_of(1000, uint32_t(i)));
  for (int i = 0; i < 4; ++i) {
    auto job = std::make_shared<StoreJob>();
    job->key = key_of(i);
    job->pieces = {std::span<const std::byte>(data[size_t(i)])};
    s.store(job);
    s.flush();
    EXPECT_TRUE(job->copied.load());
  }
  const Digest first[] = {key_of(0)};
  EXPECT_TRUE(s.locate(first).empty());  // the oldest went
  const Digest rest[] = {key_of(1), key_of(2), key_of(3)};
  EXPECT_EQ(s.locate(rest).size(), 3u);
  // A load into two pieces.
  std::vector<std::byte> out(1000);
  auto job = std::make_shared<LoadJob>();
  job->block_bytes = 1000;
  job->keys = {key_of(2), key_of(0)};
  job->dest = {{std::span<std::byte>(out.data(), 400), std::span<std::byte>(out.data() + 400, 600)},
               {std::span<std::byte>(out.data(), 1000)}};
  s.load(job);
  while (!job->done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(job->loaded, 1);  // block 0 is gone: the load stops there
  EXPECT_EQ(job->from_ram, 1);
  EXPECT_EQ(out, data[2]);
  const auto st = s.stats();
  EXPECT_EQ(st.ram_blocks, 3);
  EXPECT_EQ(st.ram_evictions, 1u);
}

// The engine over the tiers, on the embedded default model (it has an MTP module).
class EngineTiers : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pool_ = new ThreadPool(2);
    model_ = Model::load(test::source_path("models/whale-r2-tiny"), *pool_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete pool_;
  }
  static std::vector<EngineRequest> requests(int n, uint32_t seed) {
    std::mt19937 g(seed);
    std::vector<EngineRequest> out;
    for (int i = 0; i < n; ++i) {
      EngineRequest r;
      const int len = 40 + int(g() % 90);
      for (int t = 0; t < len; ++t) r.prompt.push_back(int32_t(3 + g() % 200));
      r.options.max_tokens = 12;
      r.options.sampling.temperature = 0;
      r.top_logprobs = 3;
      r.parse = false;  // token ids only: no tokenizer
      out.push_back(std::move(r));
    }
    return out;
  }
  static EngineConfig config(std::shared_ptr<KVStore> store, int64_t draft = 0) {
    EngineConfig c;
    c.parallel = 3;
    c.ctx = 256;
    c.block_size = 8;
    c.prefill_chunk = 24;
    c.draft = draft;
    c.store = std::move(store);
    return c;
  }
  // What the requests give computed from scratch (no cache of any kind).
  static std::vector<RequestOutput> cold_outputs(const std::vector<EngineRequest>& rs, int64_t draft = 0) {
    EngineConfig c = config(nullptr, draft);
    c.prefix_cache = false;
    Engine e(*model_, nullptr, c);
    return test::run_all(e, rs);
  }
  // Runs the requests once through an engine over a store with options `o`, which writes their
  // blocks through to its tiers.
  static void write_through(const KVStoreOptions& o, const std::vector<EngineRequest>& rs) {
    auto store = std::make_shared<KVStore>(o);
    Engine e(*model_, nullptr, config(store));
    test::run_all(e, rs);
  }
  static void expect_same(const std::vector<RequestOutput>& got, const std::vector<RequestOutput>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE("request " + std::to_string(i));
      ASSERT_TRUE(got[i].finished);
      EXPECT_EQ(got[i].error, "");
      EXPECT_EQ(got[i].tokens, want[i].tokens);
      ASSERT_EQ(got[i].logprobs.size(), want[i].logprobs.size());
      for (size_t j = 0; j < got[i].logprobs.size(); ++j) {  // bit for bit
        EXPECT_EQ(got[i].logprobs[j].logprob, want[i].logprobs[j].logprob);
        EXPECT_EQ(got[i].logprobs[j].top, want[i].logprobs[j].top);
      }
    }
  }
  static int64_t sum(const std::vector<RequestOutput>& outs, int64_t GenerationStats::*field) {
    int64_t n = 0;
    for (const auto& o : outs) n += o.stats.*field;
    return n;
  }
  static ThreadPool* pool_;
  static Model* model_;
};
ThreadPool* EngineTiers::pool_;
Model* EngineTiers::model_;

TEST_F(EngineTiers, RamAndDiskHitsReturnExactlyWhatAColdRunReturns) {
  for (int64_t draft : {0, 2}) {
    SCOPED_TRACE("draft " + std::to_string(draft));
    const auto rs = requests(5, 11);
    const std::vector<RequestOutput> cold = cold_outputs(rs, draft);
    test::TempDir dir;
    KVStoreOptions o;
    o.ram_bytes = 64 << 20;
    o.disk_dir = dir.path();
    auto store = std::make_shared<KVStore>(o);
    {
      Engine e(*model_, nullptr, config(store, draft));  // writes every block through
      expect_same(test::run_all(e, rs), cold);
    }
    store->flush();
    EXPECT_GT(store->stats().disk_counters.blocks, 0);
    {
      Engine e(*model_, nullptr, config(store, draft));  // a new pool: the blocks come from RAM
      const auto outs = test::run_all(e, rs);
      expect_same(outs, cold);
      EXPECT_GT(sum(outs, &GenerationStats::cached_ram_tokens), 0);
      EXPECT_EQ(sum(outs, &GenerationStats::cached_disk_tokens), 0);
      EXPECT_EQ(sum(outs, &GenerationStats::cached_ram_tokens), sum(outs, &GenerationStats::cached_tokens));
    }
    store.reset();
    o.ram_bytes = 0;
    store = std::make_shared<KVStore>(o);  // a restart: only the directory is left
    {
      Engine e(*model_, nullptr, config(store, draft));
      const auto outs = test::run_all(e, rs);
      expect_same(outs, cold);
      EXPECT_GT(sum(outs, &GenerationStats::cached_disk_tokens), 0);
      EXPECT_EQ(sum(outs, &GenerationStats::cached_disk_tokens), sum(outs, &GenerationStats::cached_tokens));
      EXPECT_EQ(e.store_stats().disk_counters.corrupt, 0u);
    }
  }
}

TEST_F(EngineTiers, DamagedBlocksAreRecomputedNeverServed) {
  const auto rs = requests(4, 23);
  const std::vector<RequestOutput> cold = cold_outputs(rs);
  test::TempDir dir;
  KVStoreOptions o;
  o.disk_dir = dir.path();
  write_through(o, rs);
  // Damage every third block file: flipped bytes, truncation, or another block's contents.
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir / "blocks"))
    if (e.is_regular_file()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  ASSERT_GT(files.size(), 6u);
  int damaged = 0;
  for (size_t i = 0; i < files.size(); i += 3, ++damaged) {
    if (damaged % 3 == 0) {
      std::string f = test::read_file(files[i]);
      f[f.size() / 2] ^= 0x40;
      test::write_file(files[i], f);
    } else if (damaged % 3 == 1) {
      fs::resize_file(files[i], fs::file_size(files[i]) - 7);
    } else {
      fs::copy_file(files[(i + 1) % files.size()], files[i], fs::copy_options::overwrite_existing);
    }
  }
  auto store = std::make_shared<KVStore>(o);
  Engine e(*model_, nullptr, config(store));
  expect_same(test::run_all(e, rs), cold);
  const auto st = e.store_stats();
  EXPECT_GT(st.disk_counters.corrupt, 0u);
  EXPECT_LE(st.disk_counters.corrupt, uint64_t(damaged));
}

TEST_F(EngineTiers, LoadsContinueAPoolHitAndPrefetchFillsRam) {
  const auto rs = requests(3, 41);
  const std::vector<RequestOutput> cold = cold_outputs(rs);
  test::TempDir dir;
  KVStoreOptions o;
  o.disk_dir = dir.path();
  write_through(o, rs);
  // The first half of request 0's prompt in the pool (from disk), then the whole prompt: the
  // pool gives the first blocks, the disk the rest.
  {
    auto store = std::make_shared<KVStore>(o);
    Engine e(*model_, nullptr, config(store));
    EngineRequest half = rs[0];
    half.prompt.resize(half.prompt.size() / 2);
    e.run(half);
    const auto outs = test::run_all(e, {rs[0]});
    expect_same(outs, {cold[0]});
    const GenerationStats& st = outs[0].stats;
    EXPECT_GT(st.cached_disk_tokens, 0);
    EXPECT_GT(st.cached_tokens - st.cached_disk_tokens - st.cached_ram_tokens, 0);  // from the pool
  }
  // One at a time, with a RAM tier that starts empty: the queued requests' blocks come up from
  // disk into RAM while they wait.
  o.ram_bytes = 64 << 20;
  auto store = std::make_shared<KVStore>(o);
  EngineConfig c = config(store);
  c.parallel = 1;
  {
    Engine e(*model_, nullptr, c);
    expect_same(test::run_all(e, rs), cold);
  }
  for (int i = 0; i < 500 && store->stats().ram_blocks == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GT(store->stats().ram_blocks, 0);
  EXPECT_GT(store->stats().disk_hits, 0u);
}

TEST_F(EngineTiers, LoadingRequestsDoNotDisturbRunningOnesAndMayBeCancelled) {
  const auto rs = requests(6, 5);
  const std::vector<RequestOutput> cold = cold_outputs(rs);
  test::TempDir dir;
  KVStoreOptions o;
  o.disk_dir = dir.path();
  write_through(o, {rs.begin(), rs.begin() + 3});
  // Three fresh requests decode long answers while the three stored ones load from disk beside
  // them, in one engine; each gets exactly its cold answer.
  auto store = std::make_shared<KVStore>(o);
  {
    EngineConfig c = config(store);
    c.parallel = 6;
    Engine e(*model_, nullptr, c);
    std::vector<EngineRequest> order(rs.begin() + 3, rs.end());
    order.insert(order.end(), rs.begin(), rs.begin() + 3);
    const auto outs = test::run_all(e, order);
    for (int i = 0; i < 3; ++i) {
      expect_same({outs[size_t(i)]}, {cold[size_t(3 + i)]});
      expect_same({outs[size_t(3 + i)]}, {cold[size_t(i)]});
      EXPECT_GT(outs[size_t(3 + i)].stats.cached_disk_tokens, 0);
    }
    // Cancelled as it is submitted (before, during or after its load): it ends as cancelled
    // and its blocks come back.
    auto h = e.submit(rs[1]);
    h->cancel();
    RequestOutput part;
    while (h->wait(part)) {
    }
    EXPECT_EQ(part.stats.finish_reason, "cancelled");
  }
  // Engines destroyed while their requests queue or load (the sanitizer build checks that
  // nothing touches freed memory).
  for (int i = 0; i < 3; ++i) {
    Engine e(*model_, nullptr, config(store));
    for (const auto& r : rs) e.submit(r);
    std::this_thread::sleep_for(std::chrono::milliseconds(2 * i));
  }
}

}  // namespace
}  // namespace whale
