// libFuzzer target: encoding arbitrary bytes with DeepSeek-V3's tokenizer must round-trip exactly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<whale::Tokenizer> tok = [] {
    const char* dir = std::getenv("WHALE_FUZZ_TOKENIZER");
    return whale::Tokenizer::load(dir ? dir : "../shared/tokenizers/deepseek-v3");
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (tok->decode(tok->encode(text)) != text) __builtin_trap();
  whale::StreamDecoder dec(*tok);
  for (int32_t id : tok->encode(text)) dec.push(id);
  dec.flush();
  return 0;
}
