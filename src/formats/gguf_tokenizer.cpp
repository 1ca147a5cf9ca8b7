#include "formats/gguf_tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace whale {

using json = nlohmann::json;

namespace {

// The DeepSeek-V3 pre-tokenizer, as in its tokenizer.json (llama.cpp's "deepseek-v3").
const char* kDeepseekV3PreTokenizer = R"({"type": "Sequence", "pretokenizers": [
 {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
 {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})";

const GgufValue& array_of(const GgufFile& f, const std::string& key, GgufValue::Type elem) {
  const GgufValue& v = f.get(key);
  if (v.type != GgufValue::ARRAY || (v.elem_type != elem && !v.array.empty()))
    fail(f.path(), ": metadata '", key, "' is not an array of the expected type");
  return v;
}

}  // namespace

TokenizerTexts gguf_tokenizer_texts(const GgufFile& f) {
  const std::string model = f.get("tokenizer.ggml.model").as_string();
  if (model != "gpt2") fail(f.path(), ": tokenizer model '", model, "' is not supported (byte-level BPE, 'gpt2')");
  const GgufValue* pre = f.find("tokenizer.ggml.pre");
  const std::string pre_name = pre ? pre->as_string() : "";
  if (pre_name != "deepseek-v3")
    fail(f.path(), ": pre-tokenizer '", pre_name, "' is not supported (whale reads 'deepseek-v3' from GGUF; ",
         "load the Hugging Face directory for other tokenizers)");
  const GgufValue& tokens = array_of(f, "tokenizer.ggml.tokens", GgufValue::STRING);
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  if (types && (types->type != GgufValue::ARRAY || types->array.size() != tokens.array.size()))
    fail(f.path(), ": 'tokenizer.ggml.token_type' does not have one entry per token");
  const GgufValue& merges = array_of(f, "tokenizer.ggml.merges", GgufValue::STRING);

  json vocab = json::object(), added = json::array(), merge_list = json::array();
  for (size_t i = 0; i < tokens.array.size(); ++i) {
    const std::string& text = tokens.array[i].as_string();
    // llama_token_type: 1 normal, 3 control, 4 user-defined, 5 unused (padding).
    const int64_t type = types ? types->array[i].as_int() : 1;
    if (type == 5) continue;
    if (type == 3 || type == 4) {
      added.push_back({{"id", i}, {"content", text}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", type == 4}, {"special", type == 3}});
      continue;
    }
    vocab[text] = i;
  }
  for (const GgufValue& m : merges.array) merge_list.push_back(m.as_string());
  json tok = {{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", {{"type", "Sequence"}, {"normalizers", json::array()}}},
              {"pre_tokenizer", json::parse(kDeepseekV3PreTokenizer)},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
              {"model",
               {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab},
                {"merges", merge_list}}}};

  json cfg = json::object();
  auto token_text = [&](const char* key) -> json {
    const GgufValue* v = f.find(key);
    if (!v) return nullptr;
    const int64_t id = v->as_int();
    if (id < 0 || size_t(id) >= tokens.array.size()) fail(f.path(), ": metadata '", key, "' = ", id, " is not a token id");
    return tokens.array[size_t(id)].as_string();
  };
  cfg["bos_token"] = token_text("tokenizer.ggml.bos_token_id");
  cfg["eos_token"] = token_text("tokenizer.ggml.eos_token_id");
  if (const GgufValue* v = f.find("tokenizer.ggml.add_bos_token"); v && v->type == GgufValue::BOOL)
    cfg["add_bos_token"] = std::get<bool>(v->scalar);
  if (const GgufValue* v = f.find("tokenizer.chat_template")) cfg["chat_template"] = v->as_string();
  try {
    return {tok.dump(), cfg.dump()};
  } catch (const json::exception&) {
    fail(f.path(), ": the tokenizer metadata (tokens, merges or chat template) is not valid UTF-8");
  }
}


}  // namespace whale
