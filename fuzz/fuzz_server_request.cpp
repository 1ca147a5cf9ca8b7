// libFuzzer target: HTTP request bodies -> the OpenAI, Anthropic and Ollama request parsers (JSON,
// field types, messages, tools, thinking switches, sampling options, prompt rendering and
// tokenization). The first byte picks the endpoint (0xF0 and up: Anthropic's Messages, through
// count_tokens, which parses and renders without generating; 0xE0-0xEF: OpenAI's Responses, which
// stop at the missing engine after parsing). Only ApiError may come out.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "model/config.h"
#include "server/api.h"
#include "tokenizer/tokenizer.h"

namespace {
struct Fixture {
  std::unique_ptr<whale::Tokenizer> tok = whale::Tokenizer::load("tests/fixtures/tiny_tokenizer");
  whale::ModelConfig config;
  whale::ServedModel model;
  Fixture() {
    config.vocab_size = tok->vocab_size();
    model.id = "tiny";
    model.tokenizer = tok.get();
    model.config = &config;
    model.ctx = 256;
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;  // run from the repository root, as scripts/test.sh does
  if (size < 1) return 0;
  const uint8_t which = data[0];
  f.model.format = whale::ChatFormat(which / 4 % 4);
  try {
    const auto body = whale::parse_json_body(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    if (which >= 0xF0) {
      whale::anthropic_count_tokens(body, f.model);
      return 0;
    }
    if (which >= 0xE0) {
      whale::openai_responses(body, f.model);
      return 0;
    }
    switch (which % 4) {
      case 0: whale::parse_openai_chat(body, f.model); break;
      case 1: whale::parse_openai_completion(body, f.model); break;
      case 2: whale::parse_ollama_chat(body, f.model); break;
      case 3: whale::parse_ollama_generate(body, f.model); break;
    }
  } catch (const whale::ApiError&) {
  }
  return 0;
}
