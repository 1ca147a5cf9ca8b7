// libFuzzer target: the GGUF container parser, and what whale reads from a parsed file
// (deepseek2 metadata -> config, tensor mapping, the embedded tokenizer).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_tokenizer.h"
#include "model/gguf_model.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<const whale::GgufFile> f;
  try {
    f = whale::GgufFile::parse(data, size, "fuzz.gguf");
    for (const auto& t : f->tensors())
      if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
  } catch (const whale::Error&) {
    return 0;
  }
  try {
    whale::ModelConfig c = whale::gguf_model_config(*f);
    auto set = whale::gguf_tensor_set(f, c);
    for (const auto& [name, t] : set->all())
      if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
  } catch (const whale::Error&) {
  }
  try {
    whale::TokenizerTexts texts = whale::gguf_tokenizer_texts(*f);
    whale::Tokenizer::from_json(texts.tokenizer_json, texts.config_json, "fuzz.gguf");
  } catch (const whale::Error&) {
  }
  return 0;
}
