// The safetensors reader on good and lying files: every malformed input is a whale::Error
// that names the file (and tensor), never a crash or a huge allocation.
#include "core/error.h"
#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "test_util.h"

namespace whale {
namespace {

using test::TempDir;

std::string image(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
}

std::string error_of(const std::string& bytes) {
  try {
    parse_safetensors_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ParsesValidHeader) {
  auto img = image(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
                   R"("b":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[12,16]}})", 16);
  auto entries = parse_safetensors_image(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "x");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "a");
  EXPECT_EQ(entries[0].dtype, DType::BF16);
  EXPECT_EQ(entries[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(entries[1].dtype, DType::F8_E4M3);
}

TEST(Safetensors, RejectsMalformedFiles) {
  struct Case {
    std::string bytes, expect;
  } cases[] = {
      {"abc", "too small"},
      {image("{", 0), "not valid JSON"},
      {image("[1,2]", 0), "not a JSON object"},
      {image(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}})", 1), "unknown dtype"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4), "do not match shape"},
      {image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 2), "past the end"},
      {image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), "begin after end"},
      {image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "non-negative"},
      {image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), "data_offsets"},
      {image(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "shape"},
      {image(R"({"a":[]})", 4), "not an object"},
      {image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4), "overflow"},
      {image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "overlap"},
  };
  for (const auto& c : cases) {
    std::string err = error_of(c.bytes);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got '" << err << "'";
    EXPECT_NE(err.find("x.safetensors"), std::string::npos) << err;
  }
}

TEST(Safetensors, RejectsHeaderLengthBeyondFile) {
  std::string img = image("{}", 0);
  img[0] = '\xff';  // header length 255 > file
  EXPECT_NE(error_of(img).find("exceeds the file size"), std::string::npos);
  img[7] = '\x7f';  // absurd length: must not allocate or read it
  EXPECT_NE(error_of(img).find("implausible"), std::string::npos);
}

TEST(Safetensors, TruncatedFileOnDiskIsReported) {
  TempDir dir;
  write_safetensors(dir / "model.safetensors", {tensor_f32("w", {4, 4}, std::vector<float>(16, 1.0f))});
  std::string bytes = test::read_file(dir / "model.safetensors");
  test::write_file(dir / "model.safetensors", bytes.substr(0, bytes.size() - 10));
  try {
    TensorSet::open(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, WriterRoundTripsAndShardIndexIsChecked) {
  TempDir dir;
  write_safetensors(dir / "a.safetensors", {tensor_f32("x", {2}, {1.5f, -2.0f})});
  write_safetensors(dir / "b.safetensors", {tensor_bf16("y", {3}, {1.0f, 2.0f, 3.0f})});
  test::write_file(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  auto set = TensorSet::open(dir.path());
  ASSERT_NE(set->find("x"), nullptr);
  EXPECT_EQ(load_as_f32(DType::F32, set->get("x").data, 1), -2.0f);
  EXPECT_EQ(load_as_f32(DType::BF16, set->get("y").data, 2), 3.0f);
  EXPECT_EQ(set->get("x").file, dir / "a.safetensors");

  // An index that points a tensor at the wrong shard, or outside the directory.
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"x": "b.safetensors"}})");
  EXPECT_THROW(TensorSet::open(dir.path()), Error);
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"x": "../a.safetensors"}})");
  EXPECT_THROW(TensorSet::open(dir.path()), Error);
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map": {"x": "missing.safetensors"}})");
  EXPECT_THROW(TensorSet::open(dir.path()), Error);
  test::write_file(dir / "model.safetensors.index.json", R"({"weight_map": 3})");
  EXPECT_THROW(TensorSet::open(dir.path()), Error);
}

TEST(Safetensors, DuplicateTensorAcrossFilesIsAnError) {
  TempDir dir;
  write_safetensors(dir / "a.safetensors", {tensor_f32("x", {1}, {1})});
  write_safetensors(dir / "b.safetensors", {tensor_f32("x", {1}, {2})});
  EXPECT_THROW(TensorSet::open(dir.path()), Error);
}

}  // namespace
}  // namespace whale
