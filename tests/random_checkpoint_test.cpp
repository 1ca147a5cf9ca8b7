// `whale init` checkpoints: the writer and the loader agree on every tensor name and shape.
#include <set>

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

INSTANTIATE_TEST_SUITE_P(Types, RandomCheckpoint, ::testing::Values(DType::F32, DType::BF16, DType::F8_E4M3),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace whale
