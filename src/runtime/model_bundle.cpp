#include "runtime/model_bundle.h"

#include "core/error.h"
#include "formats/gguf_tokenizer.h"

namespace whale {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  if (!is_gguf_file(path)) return Tokenizer::load(path);
  auto gguf = GgufFile::open(path);
  const TokenizerTexts texts = gguf_tokenizer_texts(*gguf);
  return Tokenizer::from_json(texts.tokenizer_json, texts.config_json, path);
}

ModelBundle ModelBundle::load(const std::string& path, ThreadPool& pool, const std::string& chat_format, LoadMode mode,
                              const std::string& numerics) {
  ModelBundle b;
  b.path = path;
  b.model = Model::load(path, pool, mode);
  if (numerics != "auto") b.model->set_cache_numerics(parse_cache_numerics(numerics));
  std::string template_source = path + "/tokenizer_config.json";
  if (is_gguf_file(path)) template_source = path + " (tokenizer.chat_template)";
  b.tokenizer = load_tokenizer(path);
  if (b.tokenizer->vocab_size() > b.model->config().vocab_size)
    fail(path, ": the tokenizer has ids up to ", b.tokenizer->vocab_size() - 1, " but the model's vocab_size is ",
         b.model->config().vocab_size);
  b.chat_format = chat_format == "auto" ? detect_chat_format(b.tokenizer->chat_template(), b.model->config().architecture,
                                                              template_source)
                                        : parse_chat_format(chat_format);
  return b;
}

}  // namespace whale
