// Pre-tokenization: splits text into the pieces BPE merges within, following the
// `pre_tokenizer` of tokenizer.json. Supported: Sequence, Split (Regex or String pattern;
// behaviors Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous; invert),
// ByteLevel (with or without its GPT-2 regex; add_prefix_space), Digits.
// Regexes run on PCRE2 in UTF mode with their Unicode classes spelled out from whale's pinned
// Unicode tables (tokenizer/unicode.h), so splits match HF `tokenizers` for every code point
// whatever PCRE2 version is installed; invalid UTF-8 bytes are never matched, so they survive
// as pieces of their own and come back byte-exact.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace whale {

class PreTokenizer {
 public:
  // `json_text` is the pre_tokenizer object (or "null"); `source` names the file in errors.
  static std::unique_ptr<PreTokenizer> from_json(const std::string& json_text, const std::string& source);
  virtual ~PreTokenizer() = default;

  // Splits each piece of `pieces` further; pieces are views into the caller's text.
  virtual void split(std::vector<std::string_view>& pieces) const = 0;

  // Whether a leading space is prepended to the text first (ByteLevel add_prefix_space).
  virtual bool adds_prefix_space() const { return false; }
};

}  // namespace whale
