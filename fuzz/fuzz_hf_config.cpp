// libFuzzer target: the Hugging Face config.json parser and its validation.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "model/hf_config.h"
#include "model/rope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    whale::ModelConfig c = whale::parse_hf_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    whale::Rope rope(c);  // derived tables must be computable for any accepted config
    whale::Rope compress(c.qk_rope_head_dim, c.compress_rope_theta, c.yarn);  // V4's CSA / HCA layers
    (void)rope;
    (void)compress;
  } catch (const whale::Error&) {
  }
  return 0;
}
