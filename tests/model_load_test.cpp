// Loading a model directory that lies: every inconsistency between config and tensors is a
// one-line whale::Error naming the file, tensor or field.
#include <functional>

#include "core/error.h"
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

TEST(ModelLoad, WeightsAreMappedNotCopied) {
  ThreadPool pool(1);
  auto model = Model::load(test::golden_dir("v2"), pool);  // sharded: three files
  const auto& w = model->weights();
  EXPECT_TRUE(w.owned.raw.empty());  // every matrix points into a file mapping
  EXPECT_GT(w.weight_bytes, 0u);
}

}  // namespace
}  // namespace whale
