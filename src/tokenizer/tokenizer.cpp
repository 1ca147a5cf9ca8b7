#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace whale {

using json = nlohmann::json;

namespace {

// GPT-2's byte <-> printable code point table used by byte-level BPE vocabularies.
struct ByteUnicode {
  uint32_t byte_to_cp[256];
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteUnicode() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_to_cp[b] = printable ? uint32_t(b) : uint32_t(256 + n++);
      cp_to_byte[byte_to_cp[b]] = uint8_t(b);
    }
  }
};
const ByteUnicode& byte_unicode() {
  static const ByteUnicode t;
  return t;
}

// "Ġhello" -> " hello". Strings with characters outside the byte alphabet are kept as they are.
std::string unmap_bytes(const std::string& s) {
  const auto& t = byte_unicode();
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const int n = utf8::sequence_length(std::string_view(s).substr(i));
    if (n <= 0) return s;
    uint32_t cp = static_cast<unsigned char>(s[i]);
    if (n > 1) {
      cp &= 0x7fu >> n;
      for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + size_t(k)]) & 0x3f);
    }
    auto it = t.cp_to_byte.find(cp);
    if (it == t.cp_to_byte.end()) return s;
    out += char(it->second);
    i += size_t(n);
  }
  return out;
}

std::string token_content(const json& v) {  // "text" or {"content": "text", ...}
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }
bool is_space_byte(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

// Byte trie over added-token contents, for leftmost-longest matching.
struct AddedTrie {
  std::unordered_map<uint64_t, int32_t> edges;  // (node << 8 | byte) -> child node
  std::vector<int32_t> terminal{-1};            // node -> index into added tokens, or -1
  void insert(const std::string& s, int32_t index) {
    int32_t node = 0;
    for (unsigned char c : s) {
      const uint64_t key = (uint64_t(node) << 8) | c;
      auto it = edges.find(key);
      if (it == edges.end()) {
        it = edges.emplace(key, int32_t(terminal.size())).first;
        terminal.push_back(-1);
      }
      node = it->second;
    }
    terminal[size_t(node)] = index;
  }
  // Longest added token starting at s[0]: (index, length) or (-1, 0).
  std::pair<int32_t, size_t> longest(std::string_view s) const {
    int32_t node = 0, best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      auto it = edges.find((uint64_t(node) << 8) | static_cast<unsigned char>(s[i]));
      if (it == edges.end()) break;
      node = it->second;
      if (terminal[size_t(node)] >= 0) best = terminal[size_t(node)], best_len = i + 1;
    }
    return {best, best_len};
  }
};

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::string tok_path = path, cfg_path;
  if (is_directory(path)) {
    tok_path = path + "/tokenizer.json";
    cfg_path = path + "/tokenizer_config.json";
    if (!file_exists(tok_path)) fail(path, ": no tokenizer.json in this directory");
  } else {
    if (!file_exists(path)) fail(path, ": no such file or directory");
    const auto slash = path.find_last_of('/');
    cfg_path = (slash == std::string::npos ? std::string(".") : path.substr(0, slash)) + "/tokenizer_config.json";
  }
  std::string cfg = file_exists(cfg_path) ? read_text_file(cfg_path) : "";
  return from_json(read_text_file(tok_path, size_t(512) << 20), cfg, tok_path);
}

std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json, const std::string& config_json,
                                                const std::string& source) {
  json j = json::parse(tokenizer_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(source, ": not valid JSON (a Hugging Face tokenizer.json is expected)");
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->source_ = source;
  try {
    const json& model = j.at("model");
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") fail(source, ": tokenizer model type '", type, "' is not supported (whale reads byte-level BPE)");
    if (model.value("byte_fallback", false)) fail(source, ": byte_fallback BPE (SentencePiece style) is not supported");

    const json& norm = j.value("normalizer", json());
    if (!norm.is_null() && !(norm.value("type", std::string()) == "Sequence" && norm.value("normalizers", json::array()).empty()))
      fail(source, ": normalizer '", norm.value("type", std::string("?")), "' is not supported");
    const json& dec = j.value("decoder", json());
    if (!dec.is_null() && dec.value("type", std::string()) != "ByteLevel")
      fail(source, ": decoder '", dec.value("type", std::string("?")), "' is not supported (expected ByteLevel)");

    std::unordered_map<std::string, int32_t> vocab;
    const json& v = model.at("vocab");
    if (!v.is_object()) fail(source, ": model.vocab must be an object");
    vocab.reserve(v.size());
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!it.value().is_number_integer()) fail(source, ": vocabulary id of '", it.key(), "' is not an integer");
      vocab.emplace(unmap_bytes(it.key()), it.value().get<int32_t>());
    }
    std::vector<std::pair<std::string, std::string>> merges;
    const json& m = model.value("merges", json::array());
    merges.reserve(m.size());
    for (const auto& e : m) {
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos) fail(source, ": merge \"", s, "\" is not two tokens");
        merges.emplace_back(unmap_bytes(s.substr(0, sp)), unmap_bytes(s.substr(sp + 1)));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(unmap_bytes(e[0].get<std::string>()), unmap_bytes(e[1].get<std::string>()));
      } else {
        fail(source, ": malformed merge entry ", e.dump());
      }
    }
    t->bpe_ = std::make_unique<BpeModel>(std::move(vocab), merges, model.value("ignore_merges", false), source);
    t->pre_ = PreTokenizer::from_json(j.value("pre_tokenizer", json()).dump(), source);

    t->trie_ = std::make_unique<AddedTrie>();
    for (const auto& a : j.value("added_tokens", json::array())) {
      AddedToken tok;
      tok.id = a.at("id").get<int32_t>();
      tok.content = a.at("content").get<std::string>();
      tok.special = a.value("special", false);
      tok.lstrip = a.value("lstrip", false);
      tok.rstrip = a.value("rstrip", false);
      tok.single_word = a.value("single_word", false);
      if (tok.id < 0 || tok.id >= (1 << 24)) fail(source, ": added token id ", tok.id, " is out of range");
      if (tok.content.empty()) fail(source, ": added token ", tok.id, " has empty content");
      t->added_.push_back(tok);
    }
    std::sort(t->added_.begin(), t->added_.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    t->vocab_size_ = t->bpe_->max_id() + 1;
    for (size_t i = 0; i < t->added_.size(); ++i) {
      const AddedToken& a = t->added_[i];
      t->added_by_content_[a.content] = a.id;
      t->added_index_[a.id] = i;
      t->trie_->insert(a.content, int32_t(i));
      t->vocab_size_ = std::max(t->vocab_size_, a.id + 1);
    }
  } catch (const json::exception& e) {
    fail(source, ": malformed tokenizer.json: ", e.what());
  }

  if (!config_json.empty()) {
    json c = json::parse(config_json, nullptr, false);
    if (c.is_discarded() || !c.is_object()) fail(source, ": the tokenizer_config.json beside it is not valid JSON");
    t->bos_id_ = t->token_id(token_content(c.value("bos_token", json())));
    t->eos_id_ = t->token_id(token_content(c.value("eos_token", json())));
    const json& add_bos = c.value("add_bos_token", json());
    t->add_bos_ = add_bos.is_boolean() && add_bos.get<bool>();
    const json& tpl = c.value("chat_template", json());
    if (tpl.is_string()) t->chat_template_ = tpl.get<std::string>();
    else if (tpl.is_array())
      for (const auto& e : tpl)
        if (e.is_object() && e.value("name", std::string()) == "default") t->chat_template_ = e.value("template", std::string());
  }
  return t;
}

int32_t Tokenizer::token_id(std::string_view text) const {
  if (text.empty()) return -1;
  auto it = added_by_content_.find(std::string(text));
  if (it != added_by_content_.end()) return it->second;
  return bpe_->id_of(text);
}

bool Tokenizer::is_valid_id(int32_t id) const { return added_index_.count(id) || bpe_->has_id(id); }

bool Tokenizer::is_special(int32_t id) const {
  auto it = added_index_.find(id);
  return it != added_index_.end() && added_[it->second].special;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  auto it = added_index_.find(id);
  if (it != added_index_.end()) return added_[it->second].content;
  if (!bpe_->has_id(id)) fail("token id ", id, " is not in the vocabulary of ", source_);
  return bpe_->bytes_of(id);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    out += token_bytes(id);
  }
  return out;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  encode_into(text, out);
  return out;
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out) const { split_added(text, out); }

void Tokenizer::split_added(std::string_view text, std::vector<int32_t>& out) const {
  const AddedTrie& trie = *trie_;
  size_t plain_begin = 0, i = 0;
  while (i < text.size()) {
    auto [index, len] = trie.longest(text.substr(i));
    if (index < 0) {
      ++i;
      continue;
    }
    const AddedToken& a = added_[size_t(index)];
    size_t begin = i, end = i + len;
    if (a.single_word && ((begin > 0 && is_word_byte(static_cast<unsigned char>(text[begin - 1]))) ||
                          (end < text.size() && is_word_byte(static_cast<unsigned char>(text[end]))))) {
      ++i;
      continue;
    }
    if (a.lstrip)
      while (begin > plain_begin && is_space_byte(static_cast<unsigned char>(text[begin - 1]))) --begin;
    if (a.rstrip)
      while (end < text.size() && is_space_byte(static_cast<unsigned char>(text[end]))) ++end;
    encode_plain(text.substr(plain_begin, begin - plain_begin), out);
    out.push_back(a.id);
    plain_begin = i = end;
  }
  encode_plain(text.substr(plain_begin), out);
}

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string prefixed;
  if (pre_->adds_prefix_space() && text[0] != ' ') {
    prefixed = " " + std::string(text);
    text = prefixed;
  }
  std::vector<std::string_view> pieces{text};
  pre_->split(pieces);
  for (std::string_view p : pieces) bpe_->encode_piece(p, out);
}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return "";
  pending_ += tok_.token_bytes(id);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int n = utf8::sequence_length(std::string_view(pending_).substr(i));
    if (n < 0) break;  // a character still arriving
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
      continue;
    }
    out.append(pending_, i, size_t(n));
    i += size_t(n);
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace whale
