// BPE training in the classic form: count the pre-tokenized words, then repeatedly merge the
// most frequent adjacent pair (ties go to the pair of lower ids, so training is deterministic)
// until the vocabulary is full or no pair is frequent enough. Pair counts are updated
// incrementally from the words that contain the merged pair.
#include "tokenizer/bpe_trainer.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace whale {
namespace {

using ojson = nlohmann::ordered_json;

// GPT-2's byte -> printable character mapping (tokenizer.json stores tokens this way).
std::string byte_char(unsigned char b) {
  static std::vector<std::string> table = [] {
    std::vector<int> cp(256, -1);
    for (int c = '!'; c <= '~'; ++c) cp[c] = c;
    for (int c = 0xA1; c <= 0xAC; ++c) cp[c] = c;
    for (int c = 0xAE; c <= 0xFF; ++c) cp[c] = c;
    int n = 0;
    for (int c = 0; c < 256; ++c)
      if (cp[c] < 0) cp[c] = 256 + n++;
    std::vector<std::string> t(256);
    for (int c = 0; c < 256; ++c) {
      uint32_t u = uint32_t(cp[c]);
      t[c] = u < 0x80 ? std::string(1, char(u)) : std::string{char(0xC0 | (u >> 6)), char(0x80 | (u & 0x3F))};
    }
    return t;
  }();
  return table[b];
}

std::string mapped(const std::string& bytes) {
  std::string s;
  for (unsigned char b : bytes) s += byte_char(b);
  return s;
}

const char* kDeepSeekSplit =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

ojson pre_tokenizer_json(bool split_digits) {
  auto split = [](const std::string& re) {
    return ojson{{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  return ojson{{"type", "Sequence"},
               {"pretokenizers",
                {split(split_digits ? "\\p{N}" : "\\p{N}{1,3}"), split("[一-龥぀-ゟ゠-ヿ]+"), split(kDeepSeekSplit),
                 ojson{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

// A V3.1-style template (system, user and assistant turns; `thinking` opens <think> after the
// assistant tag, otherwise </think>): what HF's apply_chat_template and whale's v3.1 renderer
// both produce for plain conversations.
const char* kChatTemplate =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% if not thinking is defined %}{% set thinking = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% endif %}{% endfor %}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '<｜User｜>' + message['content'] }}{% elif message['role'] == 'assistant' %}"
    "{{ '<｜Assistant｜></think>' + message['content'] + '<｜end▁of▁sentence｜>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{% if thinking %}{{ '<｜Assistant｜><think>' }}{% else %}"
    "{{ '<｜Assistant｜></think>' }}{% endif %}{% endif %}";

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

}  // namespace

const std::vector<std::string>& deepseek_special_tokens() {
  static const std::vector<std::string> s = {
      "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>",          "<｜User｜>",
      "<｜Assistant｜>",        "<think>",             "</think>",             "<｜tool▁calls▁begin｜>",
      "<｜tool▁calls▁end｜>",    "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",   "<｜tool▁outputs▁begin｜>",
      "<｜tool▁outputs▁end｜>",  "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>"};
  return s;
}

TrainedTokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& o) {
  const auto& specials = deepseek_special_tokens();
  const int32_t first_byte = int32_t(specials.size());
  if (o.vocab_size < first_byte + 256)
    fail("tokenizer vocab size ", o.vocab_size, " is below the ", first_byte + 256, " ids of specials and bytes");
  if (o.vocab_size > (1 << 20)) fail("tokenizer vocab size ", o.vocab_size, " is too large (at most 1048576)");

  // 1. Words: the pre-tokenizer's pieces of every text, special tokens cut out first.
  const ojson pre_json = pre_tokenizer_json(o.split_digits);
  auto pre = PreTokenizer::from_json(pre_json.dump(), "bpe trainer");
  std::unordered_map<std::string, int64_t> counts;
  for (const std::string& text : texts) {
    std::vector<std::string_view> parts{std::string_view(text)};
    for (const std::string& s : specials) {
      std::vector<std::string_view> next;
      for (std::string_view p : parts) {
        size_t at;
        while ((at = p.find(s)) != std::string_view::npos) {
          next.push_back(p.substr(0, at));
          p = p.substr(at + s.size());
        }
        next.push_back(p);
      }
      parts.swap(next);
    }
    std::vector<std::string_view> pieces;
    for (std::string_view p : parts)
      if (!p.empty()) pieces.push_back(p);
    pre->split(pieces);
    for (std::string_view p : pieces)
      if (!p.empty()) ++counts[std::string(p)];
  }

  // 2. Symbols: ids first_byte.. are the 256 bytes; merged tokens follow.
  std::vector<std::string> token_bytes;
  for (int b = 0; b < 256; ++b) token_bytes.push_back(std::string(1, char(b)));
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freq;
  std::vector<std::string> sorted_words;
  for (auto& [w, c] : counts) sorted_words.push_back(w);
  std::sort(sorted_words.begin(), sorted_words.end());  // deterministic order
  for (const std::string& w : sorted_words) {
    std::vector<int32_t> sym;
    for (unsigned char b : w) sym.push_back(int32_t(b));
    words.push_back(std::move(sym));
    freq.push_back(counts[w]);
  }

  // Pair -> count, and pair -> words containing it (rebuilt lazily per merge from the index).
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::set<size_t>> where;
  for (size_t wi = 0; wi < words.size(); ++wi)
    for (size_t i = 0; i + 1 < words[wi].size(); ++i) {
      uint64_t k = pair_key(words[wi][i], words[wi][i + 1]);
      pair_count[k] += freq[wi];
      where[k].insert(wi);
    }
  // Ordered by (count desc, key asc): the best pair is the first element.
  std::set<std::pair<int64_t, uint64_t>> queue;
  for (auto& [k, c] : pair_count) queue.emplace(-c, k);

  std::vector<std::pair<int32_t, int32_t>> merges;
  const int32_t max_merges = o.vocab_size - first_byte - 256;
  while (int32_t(merges.size()) < max_merges && !queue.empty()) {
    auto [negc, key] = *queue.begin();
    if (-negc < std::max<int64_t>(o.min_frequency, 1)) break;
    const int32_t a = int32_t(key >> 32), b = int32_t(key & 0xffffffffu);
    const int32_t m = int32_t(token_bytes.size());
    token_bytes.push_back(token_bytes[size_t(a)] + token_bytes[size_t(b)]);
    merges.emplace_back(a, b);
    auto adjust = [&](uint64_t k, int64_t delta, size_t wi) {
      auto it = pair_count.find(k);
      int64_t old = it == pair_count.end() ? 0 : it->second;
      if (old) queue.erase({-old, k});
      int64_t now = old + delta;
      if (now > 0) {
        pair_count[k] = now;
        queue.emplace(-now, k);
      } else if (it != pair_count.end()) {
        pair_count.erase(it);
      }
      if (delta > 0) where[k].insert(wi);
    };
    const std::set<size_t> affected = where[key];
    for (size_t wi : affected) {
      std::vector<int32_t>& w = words[wi];
      const int64_t f = freq[wi];
      // Remove this word's pairs, merge, add them back (simple and exact).
      for (size_t i = 0; i + 1 < w.size(); ++i) adjust(pair_key(w[i], w[i + 1]), -f, wi);
      std::vector<int32_t> merged;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
          merged.push_back(m);
          ++i;
        } else {
          merged.push_back(w[i]);
        }
      }
      w.swap(merged);
      for (size_t i = 0; i + 1 < w.size(); ++i) adjust(pair_key(w[i], w[i + 1]), f, wi);
    }
    where.erase(key);
  }

  // 3. tokenizer.json: specials at ids 0.., bytes, then merged tokens in merge order.
  ojson vocab = ojson::object();
  for (size_t i = 0; i < specials.size(); ++i) vocab[specials[i]] = int32_t(i);
  for (size_t t = 0; t < token_bytes.size(); ++t) vocab[mapped(token_bytes[t])] = int32_t(first_byte + t);
  ojson merge_list = ojson::array();
  for (auto [a, b] : merges)
    merge_list.push_back(ojson::array({mapped(token_bytes[size_t(a)]), mapped(token_bytes[size_t(b)])}));
  ojson added = ojson::array();
  for (size_t i = 0; i < specials.size(); ++i) {
    // Like DeepSeek's files: BOS/EOS/pad are special (skipped when decoding with
    // skip_special_tokens); chat markers are plain added tokens that decode as text.
    added.push_back({{"id", int32_t(i)}, {"content", specials[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", i < 3}});
  }
  ojson tok = {{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", added},
               {"normalizer", nullptr},
               {"pre_tokenizer", pre_json},
               {"post_processor", nullptr},
               {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
               {"model",
                {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                 {"ignore_merges", false}, {"vocab", vocab}, {"merges", merge_list}}}};
  ojson cfg = {{"add_bos_token", true},
               {"add_eos_token", false},
               {"bos_token", specials[0]},
               {"eos_token", specials[1]},
               {"pad_token", specials[2]},
               {"model_max_length", 4096},
               {"tokenizer_class", "PreTrainedTokenizerFast"},
               {"chat_template", kChatTemplate}};
  TrainedTokenizer r;
  r.tokenizer_json = tok.dump(1);
  r.config_json = cfg.dump(1);
  r.vocab_size = first_byte + int32_t(token_bytes.size());
  r.merges = int32_t(merges.size());
  return r;
}

}  // namespace whale
