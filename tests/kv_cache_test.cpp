// The KV-cache manager behind the scheduler (runtime/kv_cache.h): reservation with eviction
// of unused prefix blocks, prefix matching, fork, and a block's bytes out and back in.
#include <cstring>

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

}  // namespace
}  // namespace whale
