// `whale init` checkpoints: the writer and the loader agree on every tensor name and shape.
#include <cstring>
#include <set>

#include "kernels/indexer.h"
#include "kernels/matmul.h"
#include "model/gguf_convert.h"
#include "model/hf_config.h"
#include "model/model.h"
#include "model/param_specs.h"
#include "model/random_checkpoint.h"
#include "test_util.h"

namespace whale {
namespace {

class RandomCheckpoint : public ::testing::TestWithParam<DType> {};

TEST_P(RandomCheckpoint, LoadsRunsAndBindsEveryTensor) {
  for (const char* golden : {"v2_lite", "v3", "dense_tied"}) {
    test::TempDir dir;
    const std::string text = test::read_file(test::golden_dir(golden) + "/config.json");
    ModelConfig c = parse_hf_config(text, golden);
    ThreadPool pool(2);
    RandomCheckpointOptions opt;
    opt.dtype = GetParam();
    opt.max_shard_bytes = 40000;  // force several shards and an index
    write_random_checkpoint(text, c, dir.path(), opt, pool);
    EXPECT_TRUE(test::fs::exists(dir / "model.safetensors.index.json"));

    auto model = Model::load(dir.path(), pool);
    EXPECT_EQ(model->config().fp8, GetParam() == DType::F8_E4M3);
    std::set<std::string> written, expected;
    auto tensors = TensorSet::open(dir.path());
    for (const auto& [name, t] : tensors->all())
      if (name.find("_scale_inv") == std::string::npos) written.insert(name);
    for (const auto& s : hf_param_specs(c)) expected.insert(s.name);
    EXPECT_EQ(written, expected) << golden;

    auto cache = model->make_cache(8);
    SeqCache seq;
    ASSERT_TRUE(seq.reserve(*cache, 3));
    Batch b;
    const int32_t toks[3] = {1, 2, 3};
    b.add(&seq, toks, 3);
    std::vector<float> logits(static_cast<size_t>(c.vocab_size));
    model->forward(b, *cache, logits.data());
    float mx = 0;
    for (float v : logits) {
      ASSERT_TRUE(std::isfinite(v));
      mx = std::max(mx, std::fabs(v));
    }
    EXPECT_GT(mx, 0.1f);  // not degenerate
  }
}

// DeepSeek-V4 in FP8 is written in the released layout llama.cpp's converter takes: FP8 projections
// with F8_E8M0 `.scale` tiles, FP4 routed experts (I8-packed e2m1, a scale per 32), BF16 router and
// compressors. whale's f32 GGUF of it gives the same logits (to float rounding); its mxfp4_moe GGUF holds the experts
// as MXFP4 with exactly the FP4 values. (Logits of the MXFP4 file are not compared: its products
// quantize activations to int8, and this random model's near-tied routing and indexer choices
// turn that into flips at some positions; tests/gguf_model_test.cpp bounds it on the golden.)
TEST(RandomCheckpoint, DeepSeekV4Fp8IsTheReleasedLayout) {
  test::TempDir dir;
  const std::string text = test::read_file(test::golden_dir("v4_fp8") + "/config.json");
  const ModelConfig c = parse_hf_config(text, "v4_fp8");
  ThreadPool pool(2);
  RandomCheckpointOptions opt;
  opt.dtype = DType::F8_E4M3;
  write_random_checkpoint(text, c, dir.path(), opt, pool);
  auto tensors = TensorSet::open(dir.path());
  EXPECT_EQ(tensors->get("layers.1.ffn.experts.0.w1.weight").dtype, DType::I8);
  EXPECT_EQ(tensors->get("layers.1.ffn.experts.0.w1.scale").dtype, DType::E8M0);
  EXPECT_EQ(tensors->get("layers.1.attn.wq_a.weight").dtype, DType::F8_E4M3);
  EXPECT_EQ(tensors->get("layers.1.attn.wq_a.scale").dtype, DType::E8M0);
  EXPECT_EQ(tensors->get("layers.1.ffn.gate.weight").dtype, DType::BF16);
  EXPECT_EQ(tensors->find("layers.1.attn.wq_a.weight_scale_inv"), nullptr);
  const std::string cfg = test::read_file(dir / "config.json");
  EXPECT_NE(cfg.find("\"expert_dtype\": \"fp4\""), std::string::npos);

  // The FP4 experts are the f32 checkpoint's draws (same seed) rounded as DeepSeek's FP4 does,
  // every row of them (the first version filled only half of each expert's values: its packed
  // I8 header holds two per byte, and the other rows were the previous tensor's leftovers).
  {
    test::TempDir f32_dir;
    RandomCheckpointOptions f32_opt;
    f32_opt.dtype = DType::F32;
    write_random_checkpoint(text, c, f32_dir.path(), f32_opt, pool);
    auto f32 = TensorSet::open(f32_dir.path());
    auto fp4_model = Model::load(dir.path(), pool);
    for (const char* w : {"w1", "w2", "w3"}) {
      const std::string name = std::string("layers.1.ffn.experts.2.") + w + ".weight";
      const TensorRef& ref = f32->get(name);
      const auto& e = fp4_model->weights().layers[1].moe.experts[2];
      const Weight& q = w == std::string("w1") ? e.gate_proj : w == std::string("w2") ? e.down_proj : e.up_proj;
      ASSERT_EQ(q.dtype, DType::F4_E2M1) << name;
      std::vector<float> want(size_t(q.cols)), got(size_t(q.cols));
      for (int64_t r = 0; r < q.rows; ++r) {
        std::memcpy(want.data(), ref.data + size_t(r * q.cols) * 4, size_t(q.cols) * 4);
        fp4_round_blocks(want.data(), q.cols, 32);
        dequantize_row(q, r, got.data());
        ASSERT_EQ(got, want) << name << " row " << r;
      }
    }
  }

  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    test::fs::copy_file(test::source_path("tests/fixtures/tiny_tokenizer/") + f, dir / f);
  convert_to_gguf(dir.path(), dir / "f32.gguf", GgufFileType::F32, pool);
  convert_to_gguf(dir.path(), dir / "mx.gguf", GgufFileType::MXFP4_MOE, pool);
  auto hf = Model::load(dir.path(), pool), f32 = Model::load(dir / "f32.gguf", pool), mx = Model::load(dir / "mx.gguf", pool);
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6, 7, 8};
  auto run = [&](Model& m) {
    auto cache = m.make_cache(16);
    SeqCache seq;
    EXPECT_TRUE(seq.reserve(*cache, int64_t(toks.size())));
    Batch b;
    b.add(&seq, toks.data(), int64_t(toks.size()));
    std::vector<float> logits(static_cast<size_t>(c.vocab_size));
    m.forward(b, *cache, logits.data());
    return logits;
  };
  EXPECT_TRUE(test::logits_close(run(*f32), run(*hf)));  // FP8 / FP4 and f32 kernels sum in other orders
  const Weight& fp4 = hf->weights().layers[1].moe.experts[3].down_proj;
  const Weight& mxfp4 = mx->weights().layers[1].moe.experts[3].down_proj;
  ASSERT_EQ(fp4.dtype, DType::F4_E2M1);
  ASSERT_EQ(mxfp4.dtype, DType::MXFP4);
  std::vector<float> a(size_t(fp4.cols)), b(a.size());
  for (int64_t r = 0; r < fp4.rows; ++r) {
    dequantize_row(fp4, r, a.data());
    dequantize_row(mxfp4, r, b.data());
    ASSERT_EQ(a, b) << "row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, RandomCheckpoint, ::testing::Values(DType::F32, DType::BF16, DType::F8_E4M3),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace whale
