#include "core/error.h"
#include "model/hf_config.h"
#include "model/rope.h"
#include "test_util.h"

namespace whale {
namespace {

std::string golden_config(const char* name) { return test::read_file(test::golden_dir(name) + "/config.json"); }

std::string error_of(const std::string& text) {
  try {
    parse_hf_config(text, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string with(const char* base, const std::string& key, const nlohmann::json& value) {
  auto j = nlohmann::json::parse(golden_config(base));
  if (value.is_discarded()) j.erase(key);
  else j[key] = value;
  return j.dump();
}

TEST(Config, ParsesEveryFieldThatChangesTheMath) {
  ModelConfig c = parse_hf_config(golden_config("v3_fp8"), "v3_fp8");
  EXPECT_EQ(c.architecture, "DeepseekV3ForCausalLM");
  EXPECT_EQ(c.hidden_size, 160);
  EXPECT_EQ(c.q_lora_rank, 144);
  EXPECT_EQ(c.kv_lora_rank, 136);
  EXPECT_EQ(c.scoring_func, ScoringFunc::Sigmoid);
  EXPECT_EQ(c.topk_method, TopkMethod::NoauxTc);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_TRUE(c.fp8);
  EXPECT_EQ(c.fp8_block_rows, 128);
  EXPECT_TRUE(c.yarn.enabled);
  EXPECT_DOUBLE_EQ(c.yarn.factor, 40);
  EXPECT_EQ(c.yarn.original_max_position_embeddings, 4096);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));

  ModelConfig lite = parse_hf_config(golden_config("v2_lite"), "v2_lite");
  EXPECT_EQ(lite.q_lora_rank, 0);  // null in the file
  EXPECT_EQ(lite.scoring_func, ScoringFunc::Softmax);
  EXPECT_EQ(lite.topk_method, TopkMethod::Greedy);
  EXPECT_TRUE(parse_hf_config(golden_config("v31_fp8_ue8m0"), "x").fp8_ue8m0);
  EXPECT_TRUE(parse_hf_config(golden_config("dense_tied"), "x").tie_word_embeddings);
}

TEST(Config, DeepSeekV32) {
  ModelConfig c = parse_hf_config(golden_config("v32"), "v32");
  EXPECT_EQ(c.architecture, "DeepseekV32ForCausalLM");
  EXPECT_TRUE(c.sparse_attention());
  EXPECT_EQ(c.index_n_heads, 16);
  EXPECT_EQ(c.index_head_dim, 32);
  EXPECT_EQ(c.index_topk, 8);
  EXPECT_EQ(c.cache_numerics, CacheNumerics::Official);  // DeepSeek's FP8 caches by default
  EXPECT_EQ(c.scoring_func, ScoringFunc::Sigmoid);       // V3 defaults otherwise
  auto j = nlohmann::json::parse(golden_config("v32"));
  j.erase("first_k_dense_replace");
  j["mlp_layer_types"] = {"dense", "dense", "sparse"};
  EXPECT_EQ(parse_hf_config(j.dump(), "v32").first_k_dense_replace, 2);
  EXPECT_EQ(parse_cache_numerics("float"), CacheNumerics::Float);
  EXPECT_THROW(parse_cache_numerics("fp4"), Error);
}

TEST(Config, MoeLayerFrequency) {
  ModelConfig c = parse_hf_config(with("v3", "moe_layer_freq", 2), "x");
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_FALSE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(2));
}

TEST(Config, BadConfigsNameTheField) {
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"{", "not valid JSON"},
      {"[]", "not a JSON object"},
      {with("v3", "architectures", {"LlamaForCausalLM"}), "unsupported architecture 'LlamaForCausalLM'"},
      {with("v3", "hidden_size", "big"), "'hidden_size' must be an integer"},
      {with("v3", "hidden_size", nlohmann::json::value_t::discarded), "missing field 'hidden_size'"},
      {with("v3", "n_group", 3), "not divisible by n_group"},
      {with("v3", "topk_group", 9), "topk_group"},
      {with("v3", "num_experts_per_tok", 99), "num_experts_per_tok"},
      {with("v3", "topk_method", "magic"), "topk_method"},
      {with("v3", "scoring_func", "relu"), "scoring_func"},
      {with("v3", "qk_rope_head_dim", 7), "must be even"},
      {with("v3", "hidden_act", "gelu"), "hidden_act"},
      {with("v3", "vocab_size", -5), "vocab_size"},
      {with("v3", "num_hidden_layers", 1000000), "num_hidden_layers"},
      {with("v3", "norm_topk_prob", 3), "norm_topk_prob"},
      {with("v3", "rope_scaling", {{"type", "dynamic"}, {"factor", 2}}), "rope_scaling type"},
      {with("v3", "quantization_config", {{"quant_method", "awq"}}), "quant_method"},
      {with("v3", "eos_token_id", "x"), "eos_token_id"},
      {with("v3", "index_n_heads", 64), "need architecture DeepseekV32ForCausalLM"},
      {with("v32", "layer_types", {"indexed_attention", "sliding_attention", "indexed_attention"}),
       "'layer_types[1]' is \"sliding_attention\""},
      {with("v32", "mlp_layer_types", {"sparse", "dense", "sparse"}), "'mlp_layer_types[1]'"},
      {with("v32", "index_head_dim", 48), "power of two"},
      {with("v32", "index_topk", 0), "index_topk"},
      {with("v32", "q_lora_rank", nullptr), "needs q_lora_rank"},
  };
  for (const auto& c : cases) {
    std::string err = error_of(c.text);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << err << "'";
  }
}

// YaRN numbers from the spec (docs §2.2/§2.3): V3 softmax scale 0.135234, correction range
// [10, 23] of 64 rotary dims; V2-Lite (mscale 0.707) scale 0.114721.
TEST(Config, YarnMatchesPublishedConstants) {
  ModelConfig v3;
  v3.qk_nope_head_dim = 128;
  v3.qk_rope_head_dim = 64;
  v3.rope_theta = 10000;
  v3.yarn = {true, 40, 4096, 32, 1, 1.0, 1.0, -1, true};
  Rope r(v3);
  EXPECT_NEAR(r.softmax_scale, 0.135234, 1e-6);
  EXPECT_FLOAT_EQ(r.attention_factor, 1.0f);
  const float base10 = float(1.0 / std::pow(10000.0, 20.0 / 64)), base23 = float(1.0 / std::pow(10000.0, 46.0 / 64));
  EXPECT_NEAR(r.inv_freq[10], base10, base10 * 1e-6);         // i <= low keeps its frequency
  EXPECT_NEAR(r.inv_freq[23], base23 / 40, base23 / 40 * 1e-6);  // i >= high is divided by factor
  v3.yarn.mscale = v3.yarn.mscale_all_dim = 0.707;
  EXPECT_NEAR(Rope(v3).softmax_scale, 0.114721, 1e-6);
}

}  // namespace
}  // namespace whale
