// libFuzzer target: tokenizer.json parsing (vocabulary, merges, pre-tokenizer regexes, added tokens).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = whale::Tokenizer::from_json(std::string(reinterpret_cast<const char*>(data), size), "", "fuzz.json");
    auto ids = tok->encode("Hello, world! 你好 <｜User｜> 123");
    if (tok->decode(ids) != "Hello, world! 你好 <｜User｜> 123") {
      // Lossy vocabularies are legal; only crashes and exceptions other than whale::Error matter.
    }
  } catch (const whale::Error&) {
  }
  return 0;
}
