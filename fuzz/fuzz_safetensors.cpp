// libFuzzer target: the safetensors header and file-image parser.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto entries = whale::parse_safetensors_image(data, size, "fuzz.safetensors");
    for (const auto& e : entries)
      if (e.end > size) __builtin_trap();  // a validated entry must lie inside the image
  } catch (const whale::Error&) {
  }
  return 0;
}
