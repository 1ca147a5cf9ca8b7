// The KV-cache manager behind the scheduler (runtime/kv_cache.h): reservation with eviction
// of unused prefix blocks, prefix matching, fork, a block's bytes out and back in, and
// windowed groups (kept only for a sequence's last blocks, in fewer slots than blocks).
#include <cstring>
#include <numeric>
#include <span>
#include <thread>

#include "core/error.h"
#include "model/kv_pool.h"
#include "runtime/kv_cache.h"
#include "test_util.h"

namespace whale {
namespace {

// Two groups of different widths, 4 tokens per block, 8 blocks.
PagedKVCache make(bool prefix = true) {
  return PagedKVCache({{"mla_latent", 2, 6}, {"other", 1, 3}}, 4, 8, prefix);
}

void fill(KVCacheManager& c, const SeqCache& s, int64_t from, int64_t to, float base) {
  for (size_t g = 0; g < c.groups().size(); ++g)
    for (int64_t l = 0; l < c.groups()[g].n_layers; ++l)
      for (int64_t p = from; p < to; ++p) {
        float* x = const_cast<SeqCache&>(s).slot(c.pool(), l, p, g);
        for (int64_t i = 0; i < c.groups()[g].dim; ++i) x[i] = base + float(g * 1000 + l * 100 + p) + 0.01f * float(i);
      }
}

// A pool the machine cannot hold is an error when it is made (naming the size and what to lower),
// not an out-of-memory kill once the context fills: its memory is only touched as it fills.
TEST(KVPool, APoolLargerThanMemoryIsRefusedUpFront) {
  const size_t GiB = size_t(1) << 30;
  check_kv_memory(10 * GiB, 1 << 20, 16 * GiB);  // fits with the reserve (2 GiB)
  check_kv_memory(100 * GiB, 1 << 20, 0);        // MemAvailable unknown: no check
  try {
    check_kv_memory(15 * GiB, 131072, 16 * GiB);
    ADD_FAILURE() << "a 15 GiB pool accepted with 16 GiB available";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("131072 tokens needs 15.0 GiB (120 KiB per token)"), std::string::npos) << m;
    EXPECT_NE(m.find("lower --ctx or --parallel"), std::string::npos) << m;
  }
  // Through the pool itself: far more blocks than any test machine has memory for.
  EXPECT_THROW(KVPool({{"mla_latent", 61, 576}}, 64, int64_t(1) << 24), Error);
}

// A block held elsewhere (here retained directly, as the KV store's writer pins a block it is
// copying) keeps its ancestors: they are not counted as available, and every block that is
// counted can be had. Found by the KV tier benchmark: admission counted a parent whose child
// was pinned, and a load then found no block to allocate.
TEST(PagedKVCache, ABlockInUseKeepsItsAncestorsOutOfTheAvailableCount) {
  KVStoreOptions o;
  o.ram_bytes = 1 << 20;
  auto store = std::make_shared<KVStore>(o);
  PagedKVCache c({{"mla_latent", 2, 6}}, 4, 8, true, Sha256::of("root"), store);
  SeqCache a;
  ASSERT_TRUE(c.reserve(a, 12));
  a.length = 12;
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  c.commit_prefix(tokens, a, 3);  // a chain of three blocks, pinned until the store copies them
  c.release(a);
  store->flush();
  c.poll();  // copied: unpinned
  EXPECT_EQ(c.available_blocks(), 8);
  SeqCache probe;
  EXPECT_EQ(c.match_prefix(tokens, 3, probe), 12);
  const int32_t last = probe.blocks[2];
  c.pool().retain(last);
  c.release(probe);
  EXPECT_EQ(c.available_blocks(), 5);  // 5 free; the chain's first two stay for the held third
  SeqCache too_many;
  EXPECT_FALSE(c.reserve(too_many, 6 * 4));
  SeqCache all;
  ASSERT_TRUE(c.reserve(all, 5 * 4));  // every block counted can be allocated
  EXPECT_EQ(c.available_blocks(), 0);
  c.release(all);
  c.pool().release(last);
  EXPECT_EQ(c.available_blocks(), 8);
}

TEST(PagedKVCache, ReservesReleasesAndEvictsOnlyUnusedPrefixBlocks) {
  auto c = make();
  EXPECT_EQ(c.total_blocks(), 8);
  EXPECT_EQ(c.block_bytes(), sizeof(float) * (2 * 4 * 6 + 1 * 4 * 3));
  SeqCache a;
  ASSERT_TRUE(c.reserve(a, 10));  // 3 blocks
  EXPECT_EQ(a.blocks.size(), 3u);
  a.length = 10;
  EXPECT_EQ(c.available_blocks(), 5);
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  c.commit_prefix(tokens, a, 2);  // two whole blocks indexed
  EXPECT_EQ(c.stats().prefix_blocks, 2);
  c.release(a);
  EXPECT_EQ(c.available_blocks(), 8);  // 6 free + 2 held only by the prefix cache
  SeqCache b;
  EXPECT_EQ(c.match_prefix(tokens, 5, b), 8);
  EXPECT_EQ(b.blocks.size(), 2u);
  EXPECT_EQ(c.available_blocks(), 6);  // matched blocks are in use again
  SeqCache big;
  EXPECT_FALSE(c.reserve(big, 7 * 4));  // more than is available: nothing allocated
  EXPECT_TRUE(big.blocks.empty());
  ASSERT_TRUE(c.reserve(big, 6 * 4));
  EXPECT_EQ(c.available_blocks(), 0);
  c.release(b);
  EXPECT_EQ(c.available_blocks(), 2);  // back to the prefix cache, evictable
  SeqCache more;
  ASSERT_TRUE(c.reserve(more, 8));     // evicts both
  EXPECT_EQ(c.stats().prefix_blocks, 0);
  SeqCache none;
  EXPECT_EQ(c.match_prefix(tokens, 5, none), 0);
  c.release(big);
  c.release(more);
  EXPECT_EQ(c.available_blocks(), 8);
}

TEST(PagedKVCache, ForkSharesWholeBlocksAndCopiesThePartialOne) {
  auto c = make();
  SeqCache a;
  ASSERT_TRUE(c.reserve(a, 6));
  fill(c, a, 0, 6, 0.5f);
  a.length = 6;
  SeqCache b;
  ASSERT_TRUE(c.fork(a, b));
  EXPECT_EQ(b.length, 6);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);  // whole block shared
  EXPECT_NE(b.blocks[1], a.blocks[1]);  // partial block copied
  for (size_t g = 0; g < 2; ++g)
    for (int64_t p = 0; p < 6; ++p)
      EXPECT_EQ(std::memcmp(b.slot(c.pool(), 0, p, g), a.slot(c.pool(), 0, p, g), sizeof(float) * size_t(c.groups()[g].dim)), 0);
  // Both grow on their own: b's new tokens do not reach a.
  ASSERT_TRUE(c.reserve(b, 2));
  fill(c, b, 6, 8, 9.0f);
  EXPECT_NE(*b.slot(c.pool(), 0, 6), *a.slot(c.pool(), 0, 6));
  c.release(a);
  EXPECT_EQ(c.pool().ref_count(b.blocks[0]), 1);
  c.release(b);
  EXPECT_EQ(c.available_blocks(), 8);
}

TEST(PagedKVCache, BlocksExportAndImportEveryGroup) {
  auto c = make(false);
  SeqCache a;
  ASSERT_TRUE(c.reserve(a, 4));
  fill(c, a, 0, 4, 2.0f);
  a.length = 4;
  std::vector<std::byte> bytes(c.block_bytes());
  c.export_block(a.blocks[0], bytes);
  SeqCache b;
  ASSERT_TRUE(c.reserve(b, 4));
  c.import_block(b.blocks[0], bytes);
  b.length = 4;
  for (size_t g = 0; g < 2; ++g)
    for (int64_t l = 0; l < c.groups()[g].n_layers; ++l)
      for (int64_t p = 0; p < 4; ++p)
        EXPECT_EQ(std::memcmp(b.slot(c.pool(), l, p, g), a.slot(c.pool(), l, p, g), sizeof(float) * size_t(c.groups()[g].dim)), 0);
  std::vector<std::byte> wrong(c.block_bytes() - 1);
  EXPECT_THROW(c.export_block(a.blocks[0], wrong), Error);
  EXPECT_THROW(c.import_block(a.blocks[0], wrong), Error);
  c.release(a);
  EXPECT_THROW(c.export_block(7, bytes), Error);  // not in use
}


// A windowed group beside a per-token one: 4 tokens per block, a window of 4 tokens (so a
// sequence of length L reads windowed values from block window_start(L) = (L − 4)/4 − 1 on),
// 16 blocks but window slots for only 5.
PagedKVCache make_windowed(bool prefix = true, std::shared_ptr<KVStore> store = nullptr) {
  return PagedKVCache({{"entries", 1, 2}, {"window", 2, 3, 1, /*window=*/4}}, 4, 16, prefix, Sha256::of("windowed"),
                      std::move(store), false, /*window_slots=*/5);
}

float value(size_t g, int64_t l, int64_t p, int64_t i) { return float(g * 1000 + l * 100 + p) + 0.01f * float(i); }

void grow(KVCacheManager& c, SeqCache& s, int64_t to) {  // token by token, as decoding does
  while (s.length < to) {
    ASSERT_TRUE(c.reserve(s, 1)) << "at length " << s.length;
    fill(c, s, s.length, s.length + 1, 0.0f);
    ++s.length;
  }
}

std::vector<int32_t> counting(int n) {  // tokens 1..n
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), 1);
  return t;
}

void load(KVCacheManager& c, std::span<const int32_t> tokens, SeqCache& s, int64_t n) {  // from the store, waiting
  auto job = c.start_load(tokens, s, n, [] {});
  while (!job->done.load()) std::this_thread::yield();
  c.finish_load(*job, tokens, s);
}

void expect_values(KVCacheManager& c, const SeqCache& s, size_t g, int64_t from, int64_t to) {
  for (int64_t l = 0; l < c.groups()[g].n_layers; ++l)
    for (int64_t p = from; p < to; ++p)
      for (int64_t i = 0; i < c.groups()[g].dim; ++i)
        ASSERT_EQ(s.slot(c.pool(), l, p, g)[i], value(g, l, p, i)) << "group " << g << " layer " << l << " position " << p;
}

// A sequence far longer than the window slots: each reserve lets go of the windows it no longer
// reads, so their slots serve its new blocks; its per-token values all stay.
TEST(PagedKVCache, WindowedGroupsKeepOnlyTheLastBlocksAndReuseTheirSlots) {
  auto c = make_windowed(false);
  EXPECT_EQ(c.pool().window(), 4);
  EXPECT_EQ(c.pool().window_slots(), 5);
  EXPECT_EQ(c.block_bytes(), sizeof(float) * (1 * 4 * 2 + 2 * 4 * 3) + sizeof(uint64_t));  // + the window flag
  SeqCache a;
  grow(c, a, 50);  // 13 blocks through 5 slots
  EXPECT_EQ(a.blocks.size(), 13u);
  EXPECT_EQ(a.window_from, c.pool().window_start(49));  // slid at the last reserve, at length 49
  // Held: blocks 10-12; kept unheld in the other two slots: the last two let go, 8 and 9.
  for (int64_t b = 0; b < 13; ++b) EXPECT_EQ(c.pool().has_window(a.blocks[size_t(b)]), b >= 8) << "block " << b;
  expect_values(c, a, 0, 0, 50);
  expect_values(c, a, 1, 8 * 4, 50);
  // Rewinding within what was read keeps the length; further back, to the longest prefix that
  // still has its windows: none here, the first block's are long gone.
  c.truncate(a, 47);
  EXPECT_EQ(a.length, 47);
  c.truncate(a, 30);
  EXPECT_EQ(a.length, 0);
  EXPECT_TRUE(a.blocks.empty());
  EXPECT_EQ(c.pool().free_window_slots(), 5);
  EXPECT_EQ(c.available_blocks(), 16);
}

// A prefix hit counts only as far as the windows before its end are kept: the finished
// sequence's last windows stay (unheld) until their slots are needed, then the hit is refused.
TEST(PagedKVCache, APrefixHitNeedsTheWindowsBeforeItsEnd) {
  auto c = make_windowed();
  const std::vector<int32_t> tokens = counting(24);
  SeqCache a;
  grow(c, a, 24);
  c.commit_prefix(tokens, a, 6);
  c.release(a);
  SeqCache hit;
  EXPECT_EQ(c.match_prefix(tokens, 6, hit), 24);
  expect_values(c, hit, 0, 0, 24);
  expect_values(c, hit, 1, c.pool().window_start(24) * 4, 24);
  SeqCache shorter;  // 4 blocks: it reads blocks 2 and 3's windows, still kept
  EXPECT_EQ(c.match_prefix(tokens, 4, shorter), 16);
  c.release(shorter);
  SeqCache shortest;  // 2 blocks: block 0's window was the first reused
  EXPECT_EQ(c.match_prefix(tokens, 2, shortest), 0);
  c.release(hit);
  SeqCache other;  // takes every window slot: the finished sequence's are reused
  ASSERT_TRUE(c.reserve(other, 5 * 4));
  SeqCache gone;
  EXPECT_EQ(c.match_prefix(tokens, 6, gone), 0);
  EXPECT_TRUE(gone.blocks.empty());
  EXPECT_FALSE(c.reserve(gone, 4));  // blocks are free, but no window slot
  c.release(other);
  EXPECT_EQ(c.available_blocks(), 16);
  EXPECT_EQ(c.pool().free_window_slots(), 5);
}

// Forks hold the shared blocks' windows; the copy of the partial block gets its own slot.
TEST(PagedKVCache, AForkHoldsTheWindowsItShares) {
  auto c = make_windowed(false);
  SeqCache a;
  grow(c, a, 10);
  SeqCache b;
  ASSERT_TRUE(c.fork(a, b));
  c.release(a);  // b still reads blocks 1 and 2's windows
  expect_values(c, b, 1, c.pool().window_start(10) * 4, 10);
  grow(c, b, 14);
  expect_values(c, b, 1, c.pool().window_start(14) * 4, 14);
  c.release(b);
  EXPECT_EQ(c.pool().free_window_slots(), 5);
}

// A block exported without its windowed values says so: zeros and a flag, which a load
// honours (the block counts for a prefix only where its window is not read).
TEST(PagedKVCache, ABlockWithoutItsWindowExportsAFlagNotGarbage) {
  auto c = make_windowed(false);
  SeqCache a;
  grow(c, a, 40);
  std::vector<std::byte> with(c.block_bytes()), without(c.block_bytes());
  c.export_block(a.blocks.back(), with);
  c.export_block(a.blocks[0], without);
  uint64_t flag = 0;
  std::memcpy(&flag, with.data() + with.size() - 8, 8);
  EXPECT_EQ(flag, 1u);
  std::memcpy(&flag, without.data() + without.size() - 8, 8);
  EXPECT_EQ(flag, 0u);
  const size_t entries = sizeof(float) * 4 * 2;
  for (size_t i = entries; i + 8 < without.size(); ++i) ASSERT_EQ(without[i], std::byte{0});
  SeqCache b;
  ASSERT_TRUE(c.reserve(b, 4));
  EXPECT_THROW(c.import_block(b.blocks[0], without), Error);  // b reads this block's window
  c.import_block(b.blocks[0], with);
  b.length = 4;
  for (int64_t p = 0; p < 4; ++p)
    EXPECT_EQ(std::memcmp(b.slot(c.pool(), 1, p, 1), a.slot(c.pool(), 1, 36 + p, 1), sizeof(float) * 3), 0);
  c.release(a);
  c.release(b);
}

// Through the RAM tier: a conversation's blocks come back from the store as far as their
// windows allow, and a block stored without its window never serves one.
TEST(PagedKVCache, TierLoadsStopWhereTheWindowsAreMissing) {
  KVStoreOptions o;
  o.ram_bytes = 1 << 20;
  auto store = std::make_shared<KVStore>(o);
  auto c = make_windowed(true, store);
  const std::vector<int32_t> tokens = counting(24);
  SeqCache a;
  grow(c, a, 24);
  // Blocks 3-5, whose windows a holds, go with them; 1-2 (kept unheld) and 0 (reused) without.
  c.commit_prefix(tokens, a, 6);
  c.release(a);
  EXPECT_EQ(c.pool().free_window_slots(), 2);  // the copies pin only the windows a held
  store->flush();
  c.poll();
  SeqCache flood;  // pushes the pool's copies out: only the store has them now
  grow(c, flood, 16 * 4);
  c.release(flood);
  SeqCache s;
  ASSERT_EQ(c.match_prefix(tokens, 6, s), 0);
  ASSERT_EQ(c.lower_blocks(tokens, 0, 6), 6);
  load(c, tokens, s, 6);
  EXPECT_EQ(s.length, 24);
  expect_values(c, s, 0, 0, 24);
  expect_values(c, s, 1, c.pool().window_start(24) * 4, 24);
  c.release(s);
  SeqCache t;  // the first block alone reads its own window, which was stored as zeros
  load(c, tokens, t, 1);
  EXPECT_EQ(t.length, 0);
  c.release(t);
}

}  // namespace
}  // namespace whale
