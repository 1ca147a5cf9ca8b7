// libFuzzer target: the disk tier's block files (kv_disk.h). Whatever a file holds, a read
// returns kOk only for a valid block of the asked key and size (then the bytes read are the
// payload), else kCorrupt with the file removed (or kMissing for another format version);
// never a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"
#include "runtime/kv_disk.h"

namespace {
std::string scratch() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/whale-fuzz-kv-XXXXXX";
    return std::string(mkdtemp(tmpl) ? tmpl : "/tmp/whale-fuzz-kv");
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static whale::DiskTier disk(scratch(), uint64_t(1) << 30);
  static const whale::Digest key = whale::Sha256::of("fuzz block");
  // The first byte picks the payload size the reader expects (some inputs are then exact).
  const size_t expect = size > 0 ? size_t(data[0]) * 4 : 0;
  const std::string path = disk.block_path(key);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  std::vector<std::byte> out(expect);
  const std::span<std::byte> pieces[2] = {{out.data(), expect / 2}, {out.data() + expect / 2, expect - expect / 2}};
  const auto r = disk.read(key, pieces);
  const bool valid = whale::DiskTier::valid_file(std::as_bytes(std::span(data, size)), key, expect);
  if ((r == whale::DiskTier::Read::kOk) != valid) std::abort();
  if (valid && expect && std::memcmp(out.data(), data + whale::DiskTier::kHeaderBytes, expect) != 0) std::abort();
  // A refused file is deleted, unless it is another format version's (left alone).
  if (r == whale::DiskTier::Read::kCorrupt && std::filesystem::exists(path)) std::abort();
  return 0;
}
