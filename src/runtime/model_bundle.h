// What a chat needs from a model directory: the weights, the tokenizer and the chat format.
#pragma once
#include <memory>
#include <string>

#include "core/thread_pool.h"
#include "model/model.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace whale {

// A tokenizer from a model directory, a tokenizer.json file, or the tokenizer embedded in a
// llama.cpp GGUF file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

struct ModelBundle {
  std::string path;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  ChatFormat chat_format = ChatFormat::V3;

  // chat_format: "auto" (from tokenizer_config.json's template and the architecture) or a name;
  // numerics: "auto" (the model's default) or a CacheNumerics name.
  static ModelBundle load(const std::string& path, ThreadPool& pool, const std::string& chat_format = "auto",
                          LoadMode mode = LoadMode::kAuto, const std::string& numerics = "auto");
};

}  // namespace whale
