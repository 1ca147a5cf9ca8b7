#include "tokenizer/unicode.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace whale::unicode {

namespace {

constexpr uint32_t kMax = 0x10FFFF;

CodePointSet normalized(CodePointSet s) {
  std::sort(s.begin(), s.end());
  CodePointSet out;
  for (const auto& [a, b] : s) {
    if (!out.empty() && a <= out.back().second + 1) out.back().second = std::max(out.back().second, b);
    else out.push_back({a, b});
  }
  return out;
}

CodePointSet categories(std::initializer_list<Category> cats) {
  CodePointSet s;
  for (size_t i = 0; i < kCategoryRangeCount; ++i)
    for (Category c : cats)
      if (kCategoryRanges[i].category == c) s.push_back({kCategoryRanges[i].first, kCategoryRanges[i].last});
  return normalized(std::move(s));
}

CodePointSet assigned() {
  CodePointSet s;
  for (size_t i = 0; i < kCategoryRangeCount; ++i) s.push_back({kCategoryRanges[i].first, kCategoryRanges[i].last});
  return normalized(std::move(s));
}

// A UTF-8 character at s[i]; advances i. Returns false on invalid input.
bool next_char(std::string_view s, size_t& i, uint32_t& cp) {
  if (i >= s.size()) return false;
  const unsigned char c = static_cast<unsigned char>(s[i]);
  const size_t extra = c < 0x80 ? 0 : c >= 0xf8 ? 9 : c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 9;
  if (extra == 9 || i + extra >= s.size()) return false;
  cp = extra == 0 ? c : uint32_t(c & (0x3f >> extra));
  for (size_t k = 1; k <= extra; ++k) {
    const unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (d & 0x3f);
  }
  i += extra + 1;
  return true;
}

bool hex_value(std::string_view h, uint32_t& v) {
  if (h.empty() || h.size() > 8) return false;
  v = 0;
  for (char c : h) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return false;
    v = v * 16 + uint32_t(d);
  }
  return v <= kMax;
}

// The class of code points an escape at p[i] == '\\' stands for, as a set: property escapes,
// \s\d\w and their negations. Advances i past it. False when it is not one of these.
bool class_escape(std::string_view p, size_t& i, CodePointSet& out) {
  if (i + 1 >= p.size()) return false;
  const char e = p[i + 1];
  size_t end = i + 2;
  switch (e) {
    case 's': out = space_set(); break;
    case 'S': out = complement(space_set()); break;
    case 'd': out = digit_set(); break;
    case 'D': out = complement(digit_set()); break;
    case 'w': out = word_set(); break;
    case 'W': out = complement(word_set()); break;
    case 'p':
    case 'P': {
      std::string_view name;
      if (end < p.size() && p[end] == '{') {
        const size_t close = p.find('}', end);
        if (close == std::string_view::npos) return false;
        name = p.substr(end + 1, close - end - 1);
        end = close + 1;
      } else if (end < p.size()) {
        name = p.substr(end, 1);
        end += 1;
      }
      bool negate = e == 'P';
      if (!name.empty() && name[0] == '^') {
        negate = !negate;
        name.remove_prefix(1);
      }
      if (!property(name, out)) return false;
      if (negate) out = complement(out);
      break;
    }
    default: return false;
  }
  i = end;
  return true;
}

// A single character of a class at p[i] (a literal or an escaped character). Advances i.
bool class_char(std::string_view p, size_t& i, uint32_t& cp) {
  if (p[i] != '\\') return next_char(p, i, cp);
  if (i + 1 >= p.size()) return false;
  const char e = p[i + 1];
  switch (e) {
    case 'n': cp = '\n'; break;
    case 'r': cp = '\r'; break;
    case 't': cp = '\t'; break;
    case 'f': cp = '\f'; break;
    case 'v': cp = '\v'; break;
    case 'a': cp = 7; break;
    case 'e': cp = 27; break;
    case 'x': {
      if (i + 2 < p.size() && p[i + 2] == '{') {
        const size_t close = p.find('}', i + 3);
        if (close == std::string_view::npos || !hex_value(p.substr(i + 3, close - i - 3), cp)) return false;
        i = close + 1;
        return true;
      }
      size_t n = 0;
      while (n < 2 && i + 2 + n < p.size() && std::isxdigit(static_cast<unsigned char>(p[i + 2 + n]))) ++n;
      if (!hex_value(p.substr(i + 2, n), cp)) return false;
      i += 2 + n;
      return true;
    }
    case 'u': {
      if (i + 6 > p.size() || !hex_value(p.substr(i + 2, 4), cp)) return false;
      i += 6;
      return true;
    }
    default:
      if (std::isalnum(static_cast<unsigned char>(e))) return false;  // an escape it does not model
      i += 1;
      return next_char(p, i, cp);  // an escaped punctuation character stands for itself
  }
  i += 2;
  return true;
}

// Parses the class at p[i] == '['. On success advances i past it and gives its set (before
// negation) and whether it is negated.
bool parse_class(std::string_view p, size_t& i, CodePointSet& set, bool& negated) {
  size_t j = i + 1;
  negated = j < p.size() && p[j] == '^';
  if (negated) ++j;
  CodePointSet items;
  bool first = true;
  while (j < p.size() && (p[j] != ']' || first)) {
    if (p[j] == '[') return false;                                     // nested class
    if (p[j] == '&' && j + 1 < p.size() && p[j + 1] == '&') return false;  // intersection
    first = false;
    CodePointSet cls;
    if (p[j] == '\\' && class_escape(p, j, cls)) {
      items.insert(items.end(), cls.begin(), cls.end());
      continue;
    }
    uint32_t a;
    if (!class_char(p, j, a)) return false;
    uint32_t b = a;
    if (j + 1 < p.size() && p[j] == '-' && p[j + 1] != ']') {
      ++j;
      if (p[j] == '[' || (p[j] == '\\' && j + 1 < p.size() && std::string_view("sSdDwWpP").find(p[j + 1]) != std::string_view::npos))
        return false;
      if (!class_char(p, j, b) || b < a) return false;
    }
    items.push_back({a, b});
  }
  if (j >= p.size()) return false;  // unterminated
  i = j + 1;
  set = normalized(std::move(items));
  return true;
}

void append_hex(std::string& out, uint32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\x{%X}", cp);
  out += buf;
}

// The set as a PCRE2 class, surrogates left out (they cannot occur in UTF-8 text, and PCRE2's
// UTF mode refuses them in patterns).
std::string class_text(const CodePointSet& s, bool negated) {
  std::string out = negated ? "[^" : "[";
  size_t n = 0;
  for (auto [a, b] : s) {
    for (auto [x, y] : {std::pair{a, std::min(b, 0xD7FFu)}, std::pair{std::max(a, 0xE000u), b}}) {
      if (x > y) continue;
      append_hex(out, x);
      if (y > x) {
        out += '-';
        append_hex(out, y);
      }
      ++n;
    }
  }
  if (n == 0) return negated ? "[\\x{0}-\\x{10FFFF}]" : "(?!)";  // nothing / anything
  return out + "]";
}

}  // namespace

Category category(uint32_t cp) {
  const CategoryRange* end = kCategoryRanges + kCategoryRangeCount;
  const CategoryRange* r = std::upper_bound(kCategoryRanges, end, cp, [](uint32_t c, const CategoryRange& x) { return c < x.first; });
  if (r == kCategoryRanges || (r - 1)->last < cp) return Category::Cn;
  return (r - 1)->category;
}

CodePointSet set_union(const CodePointSet& a, const CodePointSet& b) {
  CodePointSet s = a;
  s.insert(s.end(), b.begin(), b.end());
  return normalized(std::move(s));
}

CodePointSet complement(const CodePointSet& a) {
  CodePointSet out;
  uint32_t next = 0;
  for (auto [x, y] : normalized(a)) {
    if (x > next) out.push_back({next, x - 1});
    next = y + 1;
  }
  if (next <= kMax) out.push_back({next, kMax});
  return out;
}

bool property(std::string_view name, CodePointSet& out) {
  using C = Category;
  struct Named {
    const char *short_name, *long_name;
    std::initializer_list<Category> cats;
  };
  static const Named kNames[] = {
      {"L", "Letter", {C::Lu, C::Ll, C::Lt, C::Lm, C::Lo}}, {"LC", "Cased_Letter", {C::Lu, C::Ll, C::Lt}},
      {"Lu", "Uppercase_Letter", {C::Lu}}, {"Ll", "Lowercase_Letter", {C::Ll}}, {"Lt", "Titlecase_Letter", {C::Lt}},
      {"Lm", "Modifier_Letter", {C::Lm}}, {"Lo", "Other_Letter", {C::Lo}},
      {"M", "Mark", {C::Mn, C::Mc, C::Me}}, {"Mn", "Nonspacing_Mark", {C::Mn}}, {"Mc", "Spacing_Mark", {C::Mc}},
      {"Me", "Enclosing_Mark", {C::Me}},
      {"N", "Number", {C::Nd, C::Nl, C::No}}, {"Nd", "Decimal_Number", {C::Nd}}, {"Nl", "Letter_Number", {C::Nl}},
      {"No", "Other_Number", {C::No}},
      {"P", "Punctuation", {C::Pc, C::Pd, C::Ps, C::Pe, C::Pi, C::Pf, C::Po}}, {"Pc", "Connector_Punctuation", {C::Pc}},
      {"Pd", "Dash_Punctuation", {C::Pd}}, {"Ps", "Open_Punctuation", {C::Ps}}, {"Pe", "Close_Punctuation", {C::Pe}},
      {"Pi", "Initial_Punctuation", {C::Pi}}, {"Pf", "Final_Punctuation", {C::Pf}}, {"Po", "Other_Punctuation", {C::Po}},
      {"S", "Symbol", {C::Sm, C::Sc, C::Sk, C::So}}, {"Sm", "Math_Symbol", {C::Sm}}, {"Sc", "Currency_Symbol", {C::Sc}},
      {"Sk", "Modifier_Symbol", {C::Sk}}, {"So", "Other_Symbol", {C::So}},
      {"Z", "Separator", {C::Zs, C::Zl, C::Zp}}, {"Zs", "Space_Separator", {C::Zs}}, {"Zl", "Line_Separator", {C::Zl}},
      {"Zp", "Paragraph_Separator", {C::Zp}},
      {"Cc", "Control", {C::Cc}}, {"Cf", "Format", {C::Cf}}, {"Cs", "Surrogate", {C::Cs}}, {"Co", "Private_Use", {C::Co}},
  };
  for (const Named& n : kNames)
    if (name == n.short_name || name == n.long_name) {
      out = categories(n.cats);
      return true;
    }
  if (name == "Cn" || name == "Unassigned") out = complement(assigned());
  else if (name == "C" || name == "Other") out = set_union(categories({C::Cc, C::Cf, C::Cs, C::Co}), complement(assigned()));
  else if (name == "Any") out = {{0, kMax}};
  else if (name == "Assigned") out = assigned();
  else return false;
  return true;
}

CodePointSet space_set() {
  return set_union({{0x09, 0x0D}, {0x85, 0x85}}, categories({Category::Zs, Category::Zl, Category::Zp}));
}
CodePointSet digit_set() { return categories({Category::Nd}); }
CodePointSet word_set() {
  return categories({Category::Lu, Category::Ll, Category::Lt, Category::Lm, Category::Lo, Category::Mn, Category::Mc,
                     Category::Me, Category::Nd, Category::Pc});
}

std::string pin_classes(std::string_view p) {
  std::string out;
  out.reserve(p.size());
  size_t i = 0;
  while (i < p.size()) {
    if (p[i] == '[') {
      size_t j = i;
      CodePointSet s;
      bool negated = false;
      if (parse_class(p, j, s, negated)) {
        out += class_text(s, negated);
        i = j;
        continue;
      }
      // A class it does not model: copied as it is, up to its end.
      size_t k = i + 1;
      int depth = 1;
      while (k < p.size() && depth > 0) {
        if (p[k] == '\\') k += 2;
        else {
          depth += p[k] == '[' ? 1 : p[k] == ']' ? -1 : 0;
          ++k;
        }
      }
      out.append(p.substr(i, std::min(k, p.size()) - i));
      i = k;
      continue;
    }
    if (p[i] == '\\') {
      size_t j = i;
      CodePointSet s;
      if (class_escape(p, j, s)) {
        out += class_text(s, false);
        i = j;
        continue;
      }
      out.append(p.substr(i, std::min<size_t>(2, p.size() - i)));  // another escape: as it is
      i += 2;
      continue;
    }
    out += p[i++];
  }
  return out;
}

}  // namespace whale::unicode
