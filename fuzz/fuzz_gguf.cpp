// libFuzzer target: the GGUF container parser.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = whale::GgufFile::parse(data, size, "fuzz.gguf");
    for (const auto& t : f->tensors())
      if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
  } catch (const whale::Error&) {
  }
  return 0;
}
