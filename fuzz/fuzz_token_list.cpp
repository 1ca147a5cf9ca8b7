// libFuzzer target: the --tokens list parser.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/token_list.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto ids = whale::parse_token_list(std::string(reinterpret_cast<const char*>(data), size), "--tokens");
    whale::check_token_range(ids, 1000, "--tokens");
  } catch (const whale::Error&) {
  }
  return 0;
}
