// whale plan against parameter counts of transformers' own models (instantiated on the meta
// device from the same configs) and the published totals.
#include "core/error.h"
#include "model/hf_config.h"
#include "model/plan.h"
#include "test_util.h"

namespace whale {
namespace {

Plan plan_of(const std::string& name) {
  return make_plan(nlohmann::json::parse(test::read_file(test::source_path("configs/" + name))), name);
}

TEST(Plan, ReproducesPublishedTotals) {
  struct Case {
    const char* file;
    double hf_total, hf_activated;  // transformers DeepseekV2/V3/V4ForCausalLM on the meta device
    double published_total, published_activated;
  } cases[] = {
      {"deepseek-v2-lite.json", 15.706e9, 2.451e9, 15.7e9, 2.4e9},
      {"deepseek-v3.json", 671.026e9, 36.626e9, 671e9, 37e9},
      // V3.2: V3 plus a lightning indexer per layer (the activated count is whale's own).
      {"deepseek-v32.json", 671.878e9, 37.478e9, 671e9, 37e9},
      // V4 as released (compress_ratios: Flash's layers 0-1 sliding-only, Pro's 0-1 HCA); the
      // activated counts are whale's own (transformers does not report them).
      {"deepseek-v4-flash.json", 284.332e9, 13.269e9, 284e9, 13e9},
      {"deepseek-v4-pro.json", 1572.997e9, 48.85e9, 1.6e12, 49e9},
  };
  for (const auto& c : cases) {
    const Plan p = plan_of(c.file);
    EXPECT_NEAR(p.total() / c.hf_total, 1.0, 1e-3) << c.file;
    EXPECT_NEAR(p.activated() / c.hf_activated, 1.0, 1e-3) << c.file;
    EXPECT_NEAR(p.total() / c.published_total, 1.0, 0.02) << c.file;
    // DeepSeek rounds the activated count down (2.45B -> 2.4B, 13.26B -> 13B): within 2.2%.
    EXPECT_NEAR(p.activated() / c.published_activated, 1.0, 0.022) << c.file;
  }
  EXPECT_NEAR(plan_of("deepseek-v3.json").mtp.params / 11.5e9, 1.0, 0.02);  // "11.5B unique" MTP parameters
}

TEST(Plan, R2IsTheDescribedDesign) {
  const Plan p = plan_of("deepseek-r2.json");
  EXPECT_NEAR(p.total() / 1.2e12, 1.0, 0.02);
  EXPECT_NEAR(p.activated() / 78e9, 1.0, 0.02);
  ModelConfig c = parse_hf_config(test::read_file(test::source_path("configs/deepseek-r2.json")), "r2");
  EXPECT_EQ(c.hc_mult, 4);                    // mHC
  EXPECT_EQ(c.num_nextn_predict_layers, 1);   // MTP
  EXPECT_GT(c.n_shared_experts, 0);           // fine-grained MoE with shared experts
  EXPECT_EQ(c.kv_cache_dim(), 576);           // MLA latent cache
  EXPECT_GE(c.max_position_embeddings, 131072);  // 128K context via YaRN
  EXPECT_TRUE(c.yarn.enabled);
}

TEST(Plan, CacheAndFlops) {
  const Plan v3 = plan_of("deepseek-v3.json");
  EXPECT_EQ(v3.kv_values_per_token, 61 * 576);          // the latent cache: 68.6 KiB per token in BF16
  // V3.2 adds a 128-value index key per layer; DeepSeek stores the latent and the key in FP8
  // (656 + 132 bytes per token and layer), and attention reads at most index_topk keys.
  const Plan v32 = plan_of("deepseek-v32.json");
  EXPECT_EQ(v32.kv_values_per_token, 61 * (576 + 128));
  ASSERT_EQ(v32.caches.size(), 2u);
  EXPECT_EQ(v32.caches[0].official_bytes, 512 + 4 * 4 + 2 * 64);
  EXPECT_EQ(v32.caches[1].official_bytes, 128 + 4);
  EXPECT_LT(v32.decode_flops, v3.decode_flops);  // at 128K: 2048 keys instead of 131072
  // V4-Flash: a ring of 128 kv per layer, CSA entries every 4 tokens (+ FP4 index keys), HCA every 128.
  const Plan flash = plan_of("deepseek-v4-flash.json");
  ASSERT_EQ(flash.caches.size(), 4u);
  EXPECT_EQ(flash.caches[0].ring, 128);
  EXPECT_EQ(flash.caches[1].layers, 21);
  EXPECT_EQ(flash.caches[3].layers, 20);
  EXPECT_NEAR(flash.kv_values_per_token, 21 * (512.0 + 128) / 4 + 20 * 512.0 / 128, 1e-6);
  // 1M tokens cost about 8x 128K (the ring is fixed): compressed entries grow, the window does not.
  EXPECT_NEAR(flash.official_cache_bytes(1 << 20) / flash.official_cache_bytes(1 << 17), 8.0, 0.1);
  // whale's float32 cache: per token only the entries; the kv (43 layers) and the compressor
  // inputs (CSA: kv and gate of 2 × 512 and of the indexer's 2 × 128; HCA: 2 × 512) per window token.
  EXPECT_NEAR(flash.whale_bytes_per_token, 4 * flash.kv_values_per_token, 1e-6);
  EXPECT_EQ(flash.window_tokens, 128);
  EXPECT_EQ(flash.whale_window_bytes_per_token, 4.0 * (43 * 512 + 21 * (4 * 512 + 4 * 128) + 20 * 2 * 512));
  EXPECT_EQ(v3.whale_bytes_per_token, 4.0 * 61 * 576);  // MLA: every token's latent, no window
  EXPECT_EQ(v3.window_tokens, 0);
  EXPECT_GT(v3.decode_flops, 2 * v3.activated());        // matmuls plus attention over the context
  const Plan r2 = plan_of("deepseek-r2.json");
  double mhc = 0;
  for (const auto& g : r2.groups)
    if (g.name == "mHC") mhc = g.params;
  EXPECT_NEAR(mhc, 64 * 2 * (24.0 * 4 * 8192 + 27) + 4 * 4 * 8192 + 5, 1);  // 2 sites per layer + hc_head
}

TEST(Plan, BadConfigsAreClearErrors) {
  auto err = [](const std::string& text) {
    try {
      make_plan(nlohmann::json::parse(text), "cfg.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto r2 = nlohmann::json::parse(test::read_file(test::source_path("configs/deepseek-r2.json")));
  r2["hc_mult"] = 0;
  EXPECT_NE(err(r2.dump()).find("hc_mult"), std::string::npos);
  r2["hc_mult"] = 4;
  r2["num_attention_heads"] = r2["num_key_value_heads"] = 100;  // 8192 is not divisible by 100
  EXPECT_NE(err(r2.dump()).find("not divisible by num_attention_heads"), std::string::npos);
  auto v4 = nlohmann::json::parse(test::read_file(test::source_path("configs/deepseek-v4-flash.json")));
  v4.erase("compress_ratios");  // no layer schedule at all
  EXPECT_NE(err(v4.dump()).find("'layer_types' or 'compress_ratios'"), std::string::npos);
  v4["compress_ratios"] = std::vector<int>(44, 4);
  v4["compress_ratios"][1] = 7;  // neither sliding (0), CSA (4) nor HCA (128)
  EXPECT_NE(err(v4.dump()).find("compress_ratios[1]"), std::string::npos);
  auto v3 = nlohmann::json::parse(test::read_file(test::source_path("configs/deepseek-v3.json")));
  v3["hc_mult"] = 4;  // mHC belongs to the R2 architecture
  EXPECT_NE(err(v3.dump()).find("DeepseekR2ForCausalLM"), std::string::npos);
}

}  // namespace
}  // namespace whale
