// The GGUF container: round trip through the writer, and lying files rejected with a clear error.
#include "core/error.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace whale {
namespace {

std::string write_sample(const std::string& path) {
  GgufWriter w;
  w.set_string("general.architecture", "deepseek2");
  w.set_u32("deepseek2.block_count", 3);
  w.set_f32("deepseek2.rope.freq_base", 10000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "\xe4\xbd\xa0"});
  w.set_i32_array("tokenizer.ggml.token_type", {1, 1, 3});
  w.add_tensor("blk.0.attn_norm.weight", DType::F32, {5});
  w.add_tensor("blk.0.ffn_down.weight", DType::Q8_0, {3, 64});  // PyTorch [out, in]
  w.write(path, [](size_t i, uint8_t* buf) {
    const size_t n = i == 0 ? 20 : 3 * 2 * 34;
    for (size_t k = 0; k < n; ++k) buf[k] = uint8_t(k * 7 + i);
  });
  return test::read_file(path);
}

TEST(Gguf, WriterAndReaderRoundTrip) {
  test::TempDir dir;
  write_sample(dir / "m.gguf");
  auto f = GgufFile::open(dir / "m.gguf");
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get("general.architecture").as_string(), "deepseek2");
  EXPECT_EQ(f->get("deepseek2.block_count").as_int(), 3);
  EXPECT_FLOAT_EQ(float(f->get("deepseek2.rope.freq_base").as_double()), 10000.0f);
  EXPECT_EQ(f->get("tokenizer.ggml.tokens").array.size(), 3u);
  EXPECT_EQ(f->get("tokenizer.ggml.tokens").array[2].as_string(), "\xe4\xbd\xa0");
  const TensorRef* t = f->tensor("blk.0.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::Q8_0);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(t->nbytes, 3u * 2 * 34);
  EXPECT_EQ(t->data[5], uint8_t(5 * 7 + 1));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 32, reinterpret_cast<uintptr_t>(f->tensor("blk.0.attn_norm.weight")->data) % 32);
  EXPECT_THROW(f->get("missing.key"), Error);
}

TEST(Gguf, RejectsLyingFiles) {
  test::TempDir dir;
  const std::string good = write_sample(dir / "m.gguf");
  auto error_of = [](std::string bytes) {
    try {
      GgufFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.gguf");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto patched = [&](size_t at, std::string with) {
    std::string b = good;
    b.replace(at, with.size(), with);
    return b;
  };
  auto u64 = [](uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); };
  auto u32 = [](uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  EXPECT_NE(error_of("GGU").find("not a GGUF file"), std::string::npos);
  EXPECT_NE(error_of(patched(0, "XXXX")).find("bad magic"), std::string::npos);
  EXPECT_NE(error_of(patched(4, u32(9))).find("version 9"), std::string::npos);
  EXPECT_NE(error_of(patched(8, u64(uint64_t(1) << 40))).find("implausible"), std::string::npos);
  EXPECT_NE(error_of(good.substr(0, good.size() - 50)).find("past the end"), std::string::npos);
  EXPECT_NE(error_of(good.substr(0, 60)).find("truncated"), std::string::npos);
  // The first key's length claims more bytes than the file has.
  EXPECT_NE(error_of(patched(24, u64(uint64_t(1) << 50))).find("truncated"), std::string::npos);
  // The tensor type of the last record (just before its offset) set to Q5_K (13): unsupported.
  const size_t off = good.find("blk.0.ffn_down.weight") + 21 + 4 + 16;
  EXPECT_NE(error_of(patched(off, u32(13))).find("ggml type Q5_K (13), which whale does not support"), std::string::npos);
  EXPECT_NE(error_of(patched(off + 4, u64(3))).find("not aligned"), std::string::npos);
}

}  // namespace
}  // namespace whale
