#include "runtime/model_bundle.h"

#include "core/error.h"

namespace whale {

ModelBundle ModelBundle::load(const std::string& path, ThreadPool& pool, const std::string& chat_format) {
  ModelBundle b;
  b.path = path;
  b.model = Model::load(path, pool);
  b.tokenizer = Tokenizer::load(path);
  if (b.tokenizer->vocab_size() > b.model->config().vocab_size)
    fail(path, ": the tokenizer has ids up to ", b.tokenizer->vocab_size() - 1, " but the model's vocab_size is ",
         b.model->config().vocab_size);
  b.chat_format = chat_format == "auto" ? detect_chat_format(b.tokenizer->chat_template(), b.model->config().architecture,
                                                              path + "/tokenizer_config.json")
                                        : parse_chat_format(chat_format);
  return b;
}

}  // namespace whale
