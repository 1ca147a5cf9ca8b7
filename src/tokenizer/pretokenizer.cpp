#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace whale {

using json = nlohmann::json;

namespace {

// A compiled, JIT-ed PCRE2 pattern; match data is per call so splitting is thread-safe.
class Regex {
 public:
  // Unicode classes are spelled out from whale's pinned tables first (tokenizer/unicode.h),
  // so PCRE2's own Unicode version never decides a split.
  Regex(const std::string& original, const std::string& source) {
    const std::string pattern = unicode::pin_classes(original);
    int err = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail(source, ": pre-tokenizer regex ", nlohmann::json(original).dump(), " does not compile (at offset ", offset,
           " after spelling out its Unicode classes): ", reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches [begin, end) in s, leftmost first.
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0;
    while (pos <= s.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos, 0, md, nullptr);
      if (rc < 0) break;  // no match (or a match error: treat the rest as unmatched)
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step over one character (or invalid byte)
        if (b >= s.size()) break;
        size_t step = 1;
        while (b + step < s.size() && (static_cast<unsigned char>(s[b + step]) & 0xc0) == 0x80) ++step;
        pos = b + step;
        continue;
      }
      f(b, e);
      pos = e;
    }
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_ = nullptr;
};

enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

class SplitPre : public PreTokenizer {
 public:
  SplitPre(const std::string& pattern, Behavior behavior, bool invert, const std::string& source)
      : regex_(pattern, source), behavior_(behavior), invert_(invert) {}

  void split(std::vector<std::string_view>& pieces) const override {
    std::vector<std::string_view> out;
    for (std::string_view p : pieces) {
      // Mark each byte range as matched or not, then group by behavior.
      std::vector<std::pair<std::string_view, bool>> parts;  // (range, is_match)
      size_t last = 0;
      regex_.for_each_match(p, [&](size_t b, size_t e) {
        if (b > last) parts.push_back({p.substr(last, b - last), invert_});
        parts.push_back({p.substr(b, e - b), !invert_});
        last = e;
      });
      if (last < p.size()) parts.push_back({p.substr(last), invert_});
      emit(p, parts, out);
    }
    pieces.swap(out);
  }

 private:
  void emit(std::string_view whole, const std::vector<std::pair<std::string_view, bool>>& parts,
            std::vector<std::string_view>& out) const {
    auto join = [&](std::string_view a, std::string_view b) {  // a and b are adjacent views
      return std::string_view(a.data(), size_t(b.data() + b.size() - a.data()));
    };
    switch (behavior_) {
      case Behavior::Isolated:
        for (const auto& [s, m] : parts) out.push_back(s);
        return;
      case Behavior::Removed:
        for (const auto& [s, m] : parts)
          if (!m) out.push_back(s);
        return;
      case Behavior::MergedWithPrevious: {
        std::string_view cur;
        bool have = false;
        for (const auto& [s, m] : parts) {
          if (m && have) cur = join(cur, s);
          else {
            if (have) out.push_back(cur);
            cur = s;
            have = true;
          }
        }
        if (have) out.push_back(cur);
        return;
      }
      case Behavior::MergedWithNext: {
        std::string_view cur;
        bool have = false;
        for (const auto& [s, m] : parts) {
          if (have && !m) {
            out.push_back(join(cur, s));
            have = false;
          } else if (m) {
            cur = have ? join(cur, s) : s;
            have = true;
          } else {
            out.push_back(s);
          }
        }
        if (have) out.push_back(cur);
        return;
      }
      case Behavior::Contiguous: {
        std::string_view cur;
        bool have = false, cur_m = false;
        for (const auto& [s, m] : parts) {
          if (have && m == cur_m) cur = join(cur, s);
          else {
            if (have) out.push_back(cur);
            cur = s;
            cur_m = m;
            have = true;
          }
        }
        if (have) out.push_back(cur);
        return;
      }
    }
    (void)whole;
  }

  Regex regex_;
  Behavior behavior_;
  bool invert_;
};

// GPT-2's pattern, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex, const std::string& source) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<SplitPre>(kGpt2Pattern, Behavior::Isolated, false, source);
  }
  void split(std::vector<std::string_view>& pieces) const override {
    if (regex_) regex_->split(pieces);
  }
  bool adds_prefix_space() const override { return add_prefix_space_; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitPre> regex_;
};

class SequencePre : public PreTokenizer {
 public:
  void split(std::vector<std::string_view>& pieces) const override {
    for (const auto& p : steps_) p->split(pieces);
  }
  bool adds_prefix_space() const override {
    for (const auto& p : steps_)
      if (p->adds_prefix_space()) return true;
    return false;
  }
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class NoPre : public PreTokenizer {
 public:
  void split(std::vector<std::string_view>&) const override {}
};

std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::unique_ptr<PreTokenizer> build(const json& j, const std::string& source) {
  if (j.is_null()) return std::make_unique<NoPre>();
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail(source, ": pre_tokenizer must be an object with a \"type\"");
  const std::string type = j["type"];
  if (type == "Sequence") {
    auto seq = std::make_unique<SequencePre>();
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      fail(source, ": Sequence pre_tokenizer needs \"pretokenizers\"");
    for (const auto& step : j["pretokenizers"]) seq->steps_.push_back(build(step, source));
    return seq;
  }
  if (type == "Split") {
    const json& pat = j.value("pattern", json());
    std::string regex;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) regex = pat["Regex"];
    else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) regex = escape_literal(pat["String"]);
    else fail(source, ": Split pre_tokenizer needs a Regex or String pattern");
    const std::string b = j.value("behavior", std::string("Isolated"));
    Behavior behavior;
    if (b == "Isolated") behavior = Behavior::Isolated;
    else if (b == "Removed") behavior = Behavior::Removed;
    else if (b == "MergedWithPrevious") behavior = Behavior::MergedWithPrevious;
    else if (b == "MergedWithNext") behavior = Behavior::MergedWithNext;
    else if (b == "Contiguous") behavior = Behavior::Contiguous;
    else fail(source, ": unknown Split behavior \"", b, "\"");
    return std::make_unique<SplitPre>(regex, behavior, j.value("invert", false), source);
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPre>(j.value("add_prefix_space", false), j.value("use_regex", true), source);
  if (type == "Digits") {
    const bool individual = j.value("individual_digits", false);
    return std::make_unique<SplitPre>(individual ? "\\p{N}" : "\\p{N}+", Behavior::Isolated, false, source);
  }
  fail(source, ": pre_tokenizer type \"", type, "\" is not supported");
}

}  // namespace

std::unique_ptr<PreTokenizer> PreTokenizer::from_json(const std::string& json_text, const std::string& source) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded()) fail(source, ": pre_tokenizer is not valid JSON");
  try {
    return build(j, source);
  } catch (const json::exception& e) {
    fail(source, ": malformed pre_tokenizer: ", e.what());
  }
}

}  // namespace whale
