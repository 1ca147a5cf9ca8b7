// Byte-level BPE tokenizer read from Hugging Face `tokenizer.json` (+ `tokenizer_config.json`),
// giving the same ids as HF `tokenizers` for DeepSeek's files:
//   1. added tokens (<｜User｜>, <｜begin▁of▁sentence｜>, ...) are matched first, leftmost-longest;
//   2. the text between them is split by the pre-tokenizer (Split regexes, ByteLevel);
//   3. each piece's bytes are merged by BPE rank.
// Decoding returns exact bytes; StreamDecoder never emits a partial UTF-8 character.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace whale {

class PreTokenizer;
class BpeModel;
struct AddedTrie;

struct AddedToken {
  int32_t id;
  std::string content;
  bool special = false;
  bool lstrip = false, rstrip = false, single_word = false;
};

class Tokenizer {
 public:
  // PATH: a model directory (tokenizer.json, optional tokenizer_config.json) or a
  // tokenizer.json file. Errors name the file. (GGUF files: runtime/model_bundle.h's
  // load_tokenizer.)
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // From JSON texts; `config_json` may be empty.
  static std::unique_ptr<Tokenizer> from_json(const std::string& tokenizer_json, const std::string& config_json,
                                              const std::string& source);
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text, bool add_bos = false) const;
  // Appends to `out` (the fast path for bulk encoding).
  void encode_into(std::string_view text, std::vector<int32_t>& out) const;

  // Exact bytes of the ids. Unknown ids throw; special tokens are kept unless skip_special.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  std::string token_bytes(int32_t id) const;  // throws for an unknown id
  bool is_valid_id(int32_t id) const;
  bool is_special(int32_t id) const;
  int32_t vocab_size() const { return vocab_size_; }  // highest id + 1

  // Looks up a token by its text (an added token or a whole vocabulary entry); -1 if none.
  int32_t token_id(std::string_view text) const;

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  bool add_bos_default() const { return add_bos_; }
  const std::string& chat_template() const { return chat_template_; }  // from tokenizer_config.json
  const std::string& source() const { return source_; }

 private:
  Tokenizer();
  void split_added(std::string_view text, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

  std::string source_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<BpeModel> bpe_;
  std::vector<AddedToken> added_;                     // sorted by id
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::unique_ptr<AddedTrie> trie_;                   // leftmost-longest matching of added tokens
  std::unordered_map<int32_t, size_t> added_index_;   // id -> index in added_
  int32_t vocab_size_ = 0;
  int32_t bos_id_ = -1, eos_id_ = -1;
  bool add_bos_ = false;
  std::string chat_template_;
};

// Turns generated ids into text as they arrive, holding back bytes until they form complete
// UTF-8 characters. Invalid sequences come out as U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false) : tok_(tok), skip_special_(skip_special) {}
  std::string push(int32_t id);  // the text that became complete
  std::string flush();           // whatever is left, invalid bytes replaced

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace whale
