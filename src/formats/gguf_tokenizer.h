// The BPE tokenizer llama.cpp embeds in GGUF files (tokenizer.ggml.*), turned into the
// tokenizer.json / tokenizer_config.json texts whale's tokenizer reads.
#pragma once
#include <string>

#include "formats/gguf.h"

namespace whale {

struct TokenizerTexts {
  std::string tokenizer_json, config_json;
};
// The embedded BPE tokenizer (tokenizer.ggml.model "gpt2" with a DeepSeek pre-tokenizer).
TokenizerTexts gguf_tokenizer_texts(const GgufFile& f);

}  // namespace whale
