// Loading a model directory that lies: every inconsistency between config and tensors is a
// one-line whale::Error naming the file, tensor or field.
#include <cstring>
#include <functional>

#include "core/error.h"
#include "core/mmap.h"
#include "formats/safetensors_writer.h"
#include "model/model.h"
#include "test_util.h"

namespace whale {
namespace {

using test::TempDir;

// Copies a golden checkpoint into `dst` as one safetensors file, letting `edit` drop or
// change tensors on the way.
void copy_checkpoint(const std::string& golden, const std::string& dst,
                     const std::function<bool(TensorToWrite&)>& edit = nullptr) {
  auto set = TensorSet::open(test::golden_dir(golden));
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : set->all()) {
    TensorToWrite w{name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)};
    if (!edit || edit(w)) out.push_back(std::move(w));
  }
  write_safetensors(dst + "/model.safetensors", out);
  test::write_file(dst + "/config.json", test::read_file(test::golden_dir(golden) + "/config.json"));
}

std::string load_error(const std::string& dir) {
  ThreadPool pool(1);
  try {
    Model::load(dir, pool);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelLoad, MissingConfig) {
  TempDir dir;
  EXPECT_NE(load_error(dir.path()).find("no config.json"), std::string::npos);
  EXPECT_NE(load_error(dir / "nonexistent").find("no config.json"), std::string::npos);
}

TEST(ModelLoad, MissingTensorIsNamed) {
  TempDir dir;
  copy_checkpoint("v3", dir.path(), [](TensorToWrite& t) { return t.name != "model.layers.1.mlp.experts.3.up_proj.weight"; });
  EXPECT_NE(load_error(dir.path()).find("missing tensor 'model.layers.1.mlp.experts.3.up_proj.weight'"), std::string::npos);
}

TEST(ModelLoad, MissingCorrectionBiasForNoauxTc) {
  TempDir dir;
  copy_checkpoint("v3", dir.path(), [](TensorToWrite& t) { return t.name.find("e_score_correction_bias") == std::string::npos; });
  EXPECT_NE(load_error(dir.path()).find("e_score_correction_bias"), std::string::npos);
}

TEST(ModelLoad, WrongShapeIsNamed) {
  TempDir dir;
  copy_checkpoint("v3", dir.path(), [](TensorToWrite& t) {
    if (t.name == "model.layers.0.self_attn.kv_b_proj.weight") {
      t.shape = {t.shape[1], t.shape[0]};  // transposed
    }
    return true;
  });
  std::string err = load_error(dir.path());
  EXPECT_NE(err.find("'model.layers.0.self_attn.kv_b_proj.weight' has shape [32, 160]"), std::string::npos) << err;
}

TEST(ModelLoad, ConfigThatDisagreesWithTensors) {
  TempDir dir;
  copy_checkpoint("v3", dir.path());
  auto j = nlohmann::json::parse(test::read_file(dir / "config.json"));
  j["kv_lora_rank"] = 48;
  test::write_file(dir / "config.json", j.dump());
  std::string err = load_error(dir.path());
  EXPECT_NE(err.find("kv_a_proj_with_mqa"), std::string::npos) << err;
  EXPECT_NE(err.find("config implies"), std::string::npos) << err;
}

// V3.2: the indexer's tensors are checked like the rest; a config that claims other index
// dimensions names the tensor that disagrees.
TEST(ModelLoad, SparseAttentionTensorsAreChecked) {
  TempDir a, b;
  copy_checkpoint("v32", a.path(), [](TensorToWrite& t) { return t.name != "model.layers.2.self_attn.indexer.k_norm.bias"; });
  EXPECT_NE(load_error(a.path()).find("missing tensor 'model.layers.2.self_attn.indexer.k_norm.bias'"), std::string::npos);
  copy_checkpoint("v32", b.path());
  auto j = nlohmann::json::parse(test::read_file(b / "config.json"));
  j["index_head_dim"] = 64;
  test::write_file(b / "config.json", j.dump());
  const std::string err = load_error(b.path());
  EXPECT_NE(err.find("model.layers.0.self_attn.indexer.wq_b.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("config implies"), std::string::npos) << err;
}

// V4: released tensor names, FP8 `.scale` and FP4 experts are checked like the rest.
TEST(ModelLoad, V4TensorsAreChecked) {
  TempDir a, b, c;
  copy_checkpoint("v4_fp8", a.path(), [](TensorToWrite& t) { return t.name != "layers.2.attn.compressor.ape"; });
  EXPECT_NE(load_error(a.path()).find("missing tensor 'layers.2.attn.compressor.ape'"), std::string::npos);
  copy_checkpoint("v4_fp8", b.path(), [](TensorToWrite& t) { return t.name != "layers.1.ffn.experts.3.w2.scale"; });
  EXPECT_NE(load_error(b.path()).find("FP4 tensor 'layers.1.ffn.experts.3.w2.weight' has no 'layers.1.ffn.experts.3.w2.scale'"),
            std::string::npos)
      << load_error(b.path());
  copy_checkpoint("v4_fp8", c.path());
  auto j = nlohmann::json::parse(test::read_file(c / "config.json"));
  j["engram_num_slots"] = 8;  // a V4 variant's key: refused, not ignored
  test::write_file(c / "config.json", j.dump());
  EXPECT_NE(load_error(c.path()).find("'engram_num_slots' belongs to a DeepSeek-V4 variant"), std::string::npos);
  j.erase("engram_num_slots");
  j["index_head_dim"] = 64;  // the config disagrees with the indexer's tensors
  test::write_file(c / "config.json", j.dump());
  const std::string err = load_error(c.path());
  EXPECT_NE(err.find("layers.1.attn.indexer.wq_b.weight' has shape"), std::string::npos) << err;
}

TEST(ModelLoad, WrongDtypeIsNamed) {
  TempDir dir;
  copy_checkpoint("v3", dir.path(), [](TensorToWrite& t) {
    if (t.name == "model.layers.0.mlp.gate_proj.weight") t.dtype = DType::I16;  // same byte size as BF16
    return true;
  });
  std::string err = load_error(dir.path());
  EXPECT_NE(err.find("'model.layers.0.mlp.gate_proj.weight' has unsupported dtype I16"), std::string::npos) << err;
}

TEST(ModelLoad, Fp8WithoutScaleIsNamed) {
  TempDir dir;
  copy_checkpoint("v3_fp8", dir.path(), [](TensorToWrite& t) { return t.name != "model.layers.0.self_attn.o_proj.weight_scale_inv"; });
  std::string err = load_error(dir.path());
  EXPECT_NE(err.find("no 'model.layers.0.self_attn.o_proj.weight_scale_inv'"), std::string::npos) << err;
}

TEST(ModelLoad, Fp8ScaleWithWrongTileCount) {
  TempDir dir;
  copy_checkpoint("v3_fp8", dir.path(), [](TensorToWrite& t) {
    if (t.name == "model.layers.1.mlp.experts.0.down_proj.weight_scale_inv") {  // [2, 1] -> [1, 2]
      t.shape = {t.shape[1], t.shape[0]};
    }
    return true;
  });
  std::string err = load_error(dir.path());
  EXPECT_NE(err.find("down_proj.weight_scale_inv"), std::string::npos) << err;
}

TEST(ModelLoad, WeightsAreUsedAsStored) {
  ThreadPool pool(1);
  for (LoadMode mode : {LoadMode::kMap, LoadMode::kCopy, LoadMode::kAuto}) {
    auto model = Model::load(test::golden_dir("v2"), pool, mode);  // sharded: three files
    const auto& w = model->weights();
    EXPECT_TRUE(w.owned.raw.empty()) << load_mode_name(mode);  // every matrix points into the file's bytes
    EXPECT_GT(w.weight_bytes, 0u);
    const TensorSet& files = model->tensors();
    if (mode == LoadMode::kMap) {
      EXPECT_EQ(files.copied_bytes(), 0u);
    } else if (mode == LoadMode::kCopy) {
      EXPECT_EQ(files.copied_bytes(), files.total_bytes());
    }
  }
}

// A GGUF file's tensors live in the GgufFile; what it did reaches the TensorSet all the same.
TEST(ModelLoad, GgufFilesTellWhetherTheyWereCopied) {
  ThreadPool pool(1);
  const std::string path = test::golden_dir("llamacpp") + "/v3-q8_0.gguf";
  auto mapped = Model::load(path, pool, LoadMode::kMap), copied = Model::load(path, pool, LoadMode::kCopy);
  EXPECT_EQ(mapped->tensors().copied_bytes(), 0u);
  EXPECT_GT(copied->tensors().total_bytes(), 0u);
  EXPECT_EQ(copied->tensors().copied_bytes(), copied->tensors().total_bytes());
}

// A copied file holds the mapped file's bytes, tensor for tensor, across shards.
TEST(ModelLoad, CopiedTensorsEqualMappedOnes) {
  auto mapped = TensorSet::open(test::golden_dir("v2"), LoadMode::kMap);
  auto copied = TensorSet::open(test::golden_dir("v2"), LoadMode::kCopy);
  ASSERT_EQ(mapped->all().size(), copied->all().size());
  for (const auto& [name, t] : mapped->all()) {
    const TensorRef* c = copied->find(name);
    ASSERT_NE(c, nullptr) << name;
    ASSERT_EQ(c->nbytes, t.nbytes) << name;
    EXPECT_NE(c->data, t.data) << name;
    EXPECT_EQ(std::memcmp(c->data, t.data, t.nbytes), 0) << name;
  }
}

TEST(MappedFile, CopyHoldsTheFileAndIsReadOnlyMemory) {
  TempDir dir;
  std::string bytes(3 << 20, '\0');  // over one huge page, not a multiple of one
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 2654435761u >> 24);
  bytes.resize(bytes.size() - 13);
  test::write_file(dir / "w.bin", bytes);
  MappedFile copy(dir / "w.bin", LoadMode::kCopy), map(dir / "w.bin", LoadMode::kMap);
  EXPECT_TRUE(copy.copied());
  EXPECT_FALSE(map.copied());
  ASSERT_EQ(copy.size(), bytes.size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % (2 << 20), 0u);
  EXPECT_EQ(std::memcmp(copy.data(), bytes.data(), bytes.size()), 0);
  EXPECT_EQ(std::memcmp(map.data(), bytes.data(), bytes.size()), 0);
  test::write_file(dir / "empty.bin", "");
  EXPECT_EQ(MappedFile(dir / "empty.bin", LoadMode::kCopy).size(), 0u);
  EXPECT_THROW(MappedFile(dir / "missing.bin", LoadMode::kCopy), Error);
}

TEST(MappedFile, AutoCopiesWhatFitsWithAReserve) {
  const size_t GiB = size_t(1) << 30;
  EXPECT_TRUE(auto_load_copies(10 * GiB, 20 * GiB));
  EXPECT_FALSE(auto_load_copies(18 * GiB, 20 * GiB));  // 2.5 GiB must stay free
  EXPECT_TRUE(auto_load_copies(17 * GiB, 20 * GiB));
  EXPECT_FALSE(auto_load_copies(1, GiB / 2));
  EXPECT_FALSE(auto_load_copies(1, 0));  // MemAvailable unreadable: map
  EXPECT_EQ(parse_load_mode("mmap"), LoadMode::kMap);
  EXPECT_EQ(parse_load_mode("copy"), LoadMode::kCopy);
  EXPECT_EQ(parse_load_mode("auto"), LoadMode::kAuto);
  EXPECT_THROW(parse_load_mode("fast"), Error);
}

}  // namespace
}  // namespace whale
