// JSON Schema → JsonGrammar: one node per (sub)schema, $refs as one-option alternatives (so
// recursive schemas are finite), patterns compiled to byte DFAs, and each node's shortest
// valid text computed by a fixpoint (a schema no value satisfies is refused here, not found
// out while decoding).
#include <algorithm>
#include <bit>
#include <cmath>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "runtime/json_grammar.h"
#include "runtime/json_grammar_internal.h"

namespace whale {

using json = nlohmann::ordered_json;
using Kind = JsonGrammar::Kind;

namespace {

// --- patterns: a regular-expression subset → a byte DFA ----------------------------------

// Bytes a pattern string may contain as written: no control characters, quote or backslash.
bool writable(int b) { return b >= 0x20 && b != '"' && b != '\\'; }

struct Rx {  // regex syntax tree
  enum Type { Set, Cat, Alt, Repeat } type = Set;
  std::vector<bool> ascii = std::vector<bool>(128, false);  // Set: ASCII members
  bool non_ascii = false;                                    // Set: every non-ASCII code point
  std::string seq;                                           // Set alternative: one literal byte sequence (non-ASCII char)
  std::vector<Rx> kids;
  int min = 0, max = -1;  // Repeat; -1: unbounded
};

class RegexParser {
 public:
  RegexParser(const std::string& p, const std::string& where) : p_(p), where_(where) {}
  Rx parse(bool* anchored_start, bool* anchored_end) {
    *anchored_start = *anchored_end = false;
    if (i_ < p_.size() && p_[i_] == '^') *anchored_start = true, ++i_;
    Rx r = alt();
    if (i_ < p_.size() && p_[i_] == '$') *anchored_end = true, ++i_;
    if (i_ != p_.size()) refuse(str_cat("unexpected '", p_[i_], "' at offset ", i_));
    return r;
  }

 private:
  [[noreturn]] void refuse(const std::string& why) { fail(where_, ": pattern \"", p_, "\" is not supported (", why, ")"); }
  bool at(char c) const { return i_ < p_.size() && p_[i_] == c; }
  Rx alt() {
    Rx a;
    a.type = Rx::Alt;
    a.kids.push_back(cat());
    while (at('|')) {
      ++i_;
      a.kids.push_back(cat());
    }
    return a.kids.size() == 1 ? std::move(a.kids[0]) : a;
  }
  Rx cat() {
    Rx c;
    c.type = Rx::Cat;
    while (i_ < p_.size() && !at('|') && !at(')')) {
      if (at('$') && i_ + 1 == p_.size()) break;
      c.kids.push_back(repeat());
    }
    return c;
  }
  int number() {
    int v = 0, digits = 0;
    while (i_ < p_.size() && std::isdigit(static_cast<unsigned char>(p_[i_]))) {
      v = v * 10 + (p_[i_++] - '0');
      if (++digits > 4) refuse("a repetition count over 9999");
    }
    if (digits == 0) refuse("a malformed {m,n}");
    return v;
  }
  Rx repeat() {
    Rx atom_ = atom();
    for (;;) {
      int mn, mx;
      if (at('*')) mn = 0, mx = -1, ++i_;
      else if (at('+')) mn = 1, mx = -1, ++i_;
      else if (at('?')) mn = 0, mx = 1, ++i_;
      else if (at('{')) {
        ++i_;
        mn = number();
        mx = mn;
        if (at(',')) {
          ++i_;
          mx = at('}') ? -1 : number();
        }
        if (!at('}')) refuse("a malformed {m,n}");
        ++i_;
        if (mx >= 0 && mx < mn) refuse("{m,n} with n < m");
      } else {
        return atom_;
      }
      if (at('?')) ++i_;  // lazy quantifiers match the same strings
      Rx r;
      r.type = Rx::Repeat;
      r.min = mn, r.max = mx;
      r.kids.push_back(std::move(atom_));
      atom_ = std::move(r);
    }
  }
  static Rx set_of(std::initializer_list<std::pair<int, int>> ranges) {
    Rx s;
    for (auto [a, b] : ranges)
      for (int c = a; c <= b; ++c) s.ascii[size_t(c)] = true;
    return s;
  }
  static Rx negate(Rx s) {
    for (size_t c = 0; c < 128; ++c) s.ascii[c] = !s.ascii[c];
    s.non_ascii = true;
    return s;
  }
  // One character: its UTF-8 bytes as written in the pattern.
  std::string utf8_char() {
    const unsigned char c = static_cast<unsigned char>(p_[i_]);
    const size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (i_ + n > p_.size()) refuse("invalid UTF-8");
    std::string s = p_.substr(i_, n);
    i_ += n;
    return s;
  }
  // An escape after '\\' (i_ at the escaped character); sets *single to its ASCII code when
  // it is one character.
  Rx escape(int* single) {
    if (i_ >= p_.size()) refuse("a trailing backslash");
    const char e = p_[i_++];
    *single = -1;
    switch (e) {
      case 'd': return set_of({{'0', '9'}});
      case 'D': return negate(set_of({{'0', '9'}}));
      case 'w': return set_of({{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}});
      case 'W': return negate(set_of({{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}}));
      case 's': return set_of({{' ', ' '}, {'\t', '\r'}});
      case 'S': return negate(set_of({{' ', ' '}, {'\t', '\r'}}));
      case 'n': *single = '\n'; break;
      case 't': *single = '\t'; break;
      case 'r': *single = '\r'; break;
      case 'f': *single = '\f'; break;
      case 'v': *single = '\v'; break;
      case 'u': {
        if (i_ + 4 > p_.size()) refuse("a malformed \\u escape");
        const int cp = std::stoi(p_.substr(i_, 4), nullptr, 16);
        i_ += 4;
        if (cp >= 0x80) refuse("a \\u escape beyond ASCII");
        *single = cp;
        break;
      }
      default:
        if (std::isalnum(static_cast<unsigned char>(e))) refuse(str_cat("the escape \\", e));
        *single = static_cast<unsigned char>(e);
    }
    return set_of({{*single, *single}});
  }
  Rx atom() {
    if (i_ >= p_.size()) refuse("a missing operand");
    const char c = p_[i_];
    if (c == '(') {
      ++i_;
      if (at('?')) {
        if (i_ + 1 < p_.size() && p_[i_ + 1] == ':') i_ += 2;
        else if (i_ + 1 < p_.size() && p_[i_ + 1] == '<' && i_ + 2 < p_.size() && p_[i_ + 2] != '=' && p_[i_ + 2] != '!') {
          i_ = p_.find('>', i_);
          if (i_ == std::string::npos) refuse("an unterminated group name");
          ++i_;
        } else {
          refuse("lookaround");
        }
      }
      Rx r = alt();
      if (!at(')')) refuse("an unclosed group");
      ++i_;
      return r;
    }
    if (c == '[') return klass();
    if (c == '.') {
      ++i_;
      Rx s = negate(set_of({{'\n', '\n'}}));
      return s;
    }
    if (c == '\\') {
      ++i_;
      int single;
      return escape(&single);
    }
    if (c == '^' || c == '$') refuse("an anchor inside the pattern");
    if (c == '*' || c == '+' || c == '?' || c == '{') refuse(str_cat("a quantifier '", c, "' with nothing before it"));
    const std::string ch = utf8_char();
    if (ch.size() == 1) return set_of({{static_cast<unsigned char>(ch[0]), static_cast<unsigned char>(ch[0])}});
    Rx s;
    s.seq = ch;
    return s;
  }
  Rx klass() {
    ++i_;  // '['
    bool neg = false;
    if (at('^')) neg = true, ++i_;
    Rx s;
    Rx alts;  // non-ASCII members
    alts.type = Rx::Alt;
    bool first = true;
    while (i_ < p_.size() && (!at(']') || first)) {
      first = false;
      int lo;
      if (at('\\')) {
        ++i_;
        Rx e = escape(&lo);
        if (lo < 0) {  // a class escape: merge it
          for (size_t k = 0; k < 128; ++k) s.ascii[k] = s.ascii[k] || e.ascii[k];
          s.non_ascii |= e.non_ascii;
          continue;
        }
      } else if (static_cast<unsigned char>(p_[i_]) >= 0x80) {
        if (neg) refuse("a non-ASCII character in a negated class");
        Rx a;
        a.seq = utf8_char();
        if (at('-') && i_ + 1 < p_.size() && p_[i_ + 1] != ']') refuse("a range of non-ASCII characters");
        alts.kids.push_back(std::move(a));
        continue;
      } else {
        lo = static_cast<unsigned char>(p_[i_++]);
      }
      int hi = lo;
      if (at('-') && i_ + 1 < p_.size() && p_[i_ + 1] != ']') {
        ++i_;
        if (at('\\')) {
          ++i_;
          escape(&hi);
          if (hi < 0) refuse("a class escape as a range end");
        } else if (static_cast<unsigned char>(p_[i_]) >= 0x80) {
          refuse("a range of non-ASCII characters");
        } else {
          hi = static_cast<unsigned char>(p_[i_++]);
        }
        if (hi < lo) refuse("a reversed range");
      }
      for (int k = lo; k <= hi; ++k) s.ascii[size_t(k)] = true;
    }
    if (!at(']')) refuse("an unclosed class");
    ++i_;
    if (neg) s = negate(std::move(s));
    if (alts.kids.empty()) return s;
    alts.kids.push_back(std::move(s));
    return alts;
  }

  const std::string& p_;
  std::string where_;
  size_t i_ = 0;
};

// Thompson NFA over bytes.
struct Nfa {
  struct State {
    std::vector<std::pair<std::pair<uint8_t, uint8_t>, int>> edges;  // byte range → state
    std::vector<int> eps;
  };
  std::vector<State> st;
  std::string where;
  int add() {
    if (st.size() > 20000) fail(where, ": pattern is too large once its repetitions are expanded");
    st.emplace_back();
    return int(st.size() - 1);
  }
  void edge(int a, int lo, int hi, int b) { st[size_t(a)].edges.push_back({{uint8_t(lo), uint8_t(hi)}, b}); }
  // A path for one byte sequence: ranges per byte.
  void path(int from, int to, const std::vector<std::pair<int, int>>& bytes) {
    int cur = from;
    for (size_t k = 0; k < bytes.size(); ++k) {
      const int next = k + 1 == bytes.size() ? to : add();
      edge(cur, bytes[k].first, bytes[k].second, next);
      cur = next;
    }
  }
  // Builds `r` between fresh states; returns {start, end}.
  std::pair<int, int> build(const Rx& r) {
    const int s = add(), e = add();
    switch (r.type) {
      case Rx::Set:
        if (!r.seq.empty()) {
          std::vector<std::pair<int, int>> bytes;
          for (unsigned char c : r.seq) bytes.push_back({c, c});
          path(s, e, bytes);
          break;
        }
        for (int c = 0; c < 128; ++c)
          if (r.ascii[size_t(c)] && writable(c)) edge(s, c, c, e);
        if (r.non_ascii) {  // every code point from U+0080, in strict UTF-8
          path(s, e, {{0xC2, 0xDF}, {0x80, 0xBF}});
          path(s, e, {{0xE0, 0xE0}, {0xA0, 0xBF}, {0x80, 0xBF}});
          path(s, e, {{0xE1, 0xEC}, {0x80, 0xBF}, {0x80, 0xBF}});
          path(s, e, {{0xED, 0xED}, {0x80, 0x9F}, {0x80, 0xBF}});
          path(s, e, {{0xEE, 0xEF}, {0x80, 0xBF}, {0x80, 0xBF}});
          path(s, e, {{0xF0, 0xF0}, {0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}});
          path(s, e, {{0xF1, 0xF3}, {0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}});
          path(s, e, {{0xF4, 0xF4}, {0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}});
        }
        break;
      case Rx::Cat: {
        int cur = s;
        for (const Rx& k : r.kids) {
          auto [a, b] = build(k);
          st[size_t(cur)].eps.push_back(a);
          cur = b;
        }
        st[size_t(cur)].eps.push_back(e);
        break;
      }
      case Rx::Alt:
        for (const Rx& k : r.kids) {
          auto [a, b] = build(k);
          st[size_t(s)].eps.push_back(a);
          st[size_t(b)].eps.push_back(e);
        }
        break;
      case Rx::Repeat: {
        int cur = s;
        for (int k = 0; k < r.min; ++k) {
          auto [a, b] = build(r.kids[0]);
          st[size_t(cur)].eps.push_back(a);
          cur = b;
        }
        if (r.max < 0) {
          auto [a, b] = build(r.kids[0]);
          st[size_t(cur)].eps.push_back(a);
          st[size_t(b)].eps.push_back(a);
          st[size_t(b)].eps.push_back(e);
        } else {
          for (int k = r.min; k < r.max; ++k) {
            auto [a, b] = build(r.kids[0]);
            st[size_t(cur)].eps.push_back(a);
            st[size_t(cur)].eps.push_back(e);
            cur = b;
          }
        }
        st[size_t(cur)].eps.push_back(e);
        break;
      }
    }
    return {s, e};
  }
  void closure(std::vector<int>& set) const {
    std::vector<int> todo = set;
    std::set<int> seen(set.begin(), set.end());
    while (!todo.empty()) {
      const int s = todo.back();
      todo.pop_back();
      for (int t : st[size_t(s)].eps)
        if (seen.insert(t).second) todo.push_back(t);
    }
    set.assign(seen.begin(), seen.end());
  }
};

JsonGrammar::Dfa compile_pattern(const std::string& pattern, const std::string& where) {
  bool anchored_start, anchored_end;
  RegexParser parser(pattern, where);
  Rx body = parser.parse(&anchored_start, &anchored_end);
  // JSON Schema patterns are searched for, not anchored: what the anchors leave open is free.
  Rx any;
  any = Rx{};
  for (size_t c = 0; c < 128; ++c) any.ascii[c] = true;
  any.non_ascii = true;
  Rx free_run;
  free_run.type = Rx::Repeat;
  free_run.min = 0, free_run.max = -1;
  free_run.kids.push_back(any);
  Rx whole;
  whole.type = Rx::Cat;
  if (!anchored_start) whole.kids.push_back(free_run);
  whole.kids.push_back(std::move(body));
  if (!anchored_end) whole.kids.push_back(free_run);

  Nfa nfa;
  nfa.where = where;
  const auto [start, end] = nfa.build(whole);
  // Subset construction.
  JsonGrammar::Dfa dfa;
  std::map<std::vector<int>, int> index;
  std::vector<std::vector<int>> sets;
  std::vector<int> first{start};
  nfa.closure(first);
  index[first] = 0;
  sets.push_back(first);
  for (size_t d = 0; d < sets.size(); ++d) {
    if (sets.size() > 4096) fail(where, ": pattern \"", pattern, "\" is not supported (its automaton exceeds 4096 states)");
    dfa.next.resize(sets.size() * 256, -1);
    const std::vector<int> cur = sets[d];
    dfa.accepting.push_back(std::find(cur.begin(), cur.end(), end) != cur.end());
    for (int b = 0; b < 256; ++b) {
      std::vector<int> to;
      for (int s : cur)
        for (const auto& [range, t] : nfa.st[size_t(s)].edges)
          if (b >= range.first && b <= range.second) to.push_back(t);
      if (to.empty()) continue;
      std::sort(to.begin(), to.end());
      to.erase(std::unique(to.begin(), to.end()), to.end());
      nfa.closure(to);
      auto [it, added] = index.emplace(to, int(sets.size()));
      if (added) sets.push_back(to);
      dfa.next.resize(sets.size() * 256, -1);
      dfa.next[d * 256 + size_t(b)] = it->second;
    }
  }
  // Distances to acceptance (reverse BFS); transitions into states that cannot accept are cut.
  const size_t n = sets.size();
  std::vector<int> dist(n, -1);
  std::deque<size_t> todo;
  for (size_t s = 0; s < n; ++s)
    if (dfa.accepting[s]) dist[s] = 0, todo.push_back(s);
  std::vector<std::vector<size_t>> preds(n);
  for (size_t s = 0; s < n; ++s)
    for (int b = 0; b < 256; ++b)
      if (dfa.next[s * 256 + size_t(b)] >= 0) preds[size_t(dfa.next[s * 256 + size_t(b)])].push_back(s);
  while (!todo.empty()) {
    const size_t t = todo.front();
    todo.pop_front();
    for (size_t s : preds[t])
      if (dist[s] < 0) dist[s] = dist[t] + 1, todo.push_back(s);
  }
  if (dist[0] < 0) fail(where, ": pattern \"", pattern, "\" matches no string that can be written in JSON without escapes");
  for (size_t s = 0; s < n; ++s)
    for (int b = 0; b < 256; ++b) {
      int& t = dfa.next[s * 256 + size_t(b)];
      if (t >= 0 && dist[size_t(t)] < 0) t = -1;
    }
  dfa.shortest.resize(n);
  for (size_t s = 0; s < n; ++s) {
    if (dist[s] < 0) continue;
    size_t cur = s;
    while (dist[cur] > 0) {
      for (int b = 0; b < 256; ++b) {
        const int t = dfa.next[cur * 256 + size_t(b)];
        if (t >= 0 && dist[size_t(t)] == dist[cur] - 1) {
          dfa.shortest[s] += char(b);
          cur = size_t(t);
          break;
        }
      }
    }
  }
  return dfa;
}

// `format` values enforced as patterns; other formats are annotations (as JSON Schema 2020-12
// treats every format by default).
const char* format_pattern(const std::string& format) {
  static const std::map<std::string, const char*> kFormats = {
      {"date", R"(^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$)"},
      {"time", R"(^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$)"},
      {"date-time",
       R"(^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$)"},
      {"uuid", R"(^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)"},
      {"ipv4", R"(^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$)"},
      {"email", R"(^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$)"},
  };
  auto it = kFormats.find(format);
  return it == kFormats.end() ? nullptr : it->second;
}

// --- schemas ------------------------------------------------------------------------------

const std::set<std::string> kAnnotations = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "$defs", "definitions", "$anchor", "contentMediaType", "contentEncoding", "discriminator", "example",
};
const std::set<std::string> kSupported = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "additionalItems", "minItems",
    "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "nullable",
};

class Compiler {
 public:
  Compiler(const json& root, JsonGrammar& g) : root_(root), g_(g) {}

  int32_t compile(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, ": the schema false allows no value");
      return JsonGrammar::kAny;
    }
    if (!s.is_object()) fail(path, ": a schema must be an object or a boolean");
    for (const auto& [k, v] : s.items())
      if (!kAnnotations.count(k) && !kSupported.count(k)) fail(path, ": the keyword '", k, "' is not supported");
    if (auto r = s.find("$ref"); r != s.end()) {
      only(s, path, "$ref", {});
      return ref(*r, path);
    }
    for (const char* key : {"anyOf", "oneOf"})
      if (auto a = s.find(key); a != s.end()) {
        only(s, path, key, {"type", "nullable"});  // Pydantic repeats the type beside anyOf
        if (!a->is_array() || a->empty()) fail(path, ": '", key, "' must be a non-empty array");
        JsonGrammar::Node n;
        n.kind = Kind::AnyOf;
        for (size_t i = 0; i < a->size(); ++i) n.options.push_back(compile((*a)[i], str_cat(path, "/", key, "/", i)));
        if (flag(s, "nullable", path)) n.options.push_back(literal_node({"null"}));
        return add(std::move(n));
      }
    if (auto a = s.find("allOf"); a != s.end()) {
      only(s, path, "allOf", {});
      if (!a->is_array() || a->size() != 1) fail(path, ": 'allOf' is supported with one member only");
      return compile((*a)[0], path + "/allOf/0");
    }
    if (auto e = s.find("enum"); e != s.end()) {
      if (!e->is_array() || e->empty()) fail(path, ": 'enum' must be a non-empty array");
      std::vector<std::string> lits;
      for (const json& v : *e) lits.push_back(v.dump());
      if (flag(s, "nullable", path)) lits.push_back("null");
      return literal_node(std::move(lits));
    }
    if (auto c = s.find("const"); c != s.end()) return literal_node({c->dump()});

    std::vector<std::string> types;
    if (auto t = s.find("type"); t != s.end()) {
      if (t->is_string()) types.push_back(t->get<std::string>());
      else if (t->is_array() && !t->empty())
        for (const json& x : *t) {
          if (!x.is_string()) fail(path, ": 'type' entries must be strings");
          types.push_back(x.get<std::string>());
        }
      else fail(path, ": 'type' must be a string or a non-empty array of strings");
    } else if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("pattern") || s.contains("minLength") || s.contains("maxLength") || s.contains("format")) {
      types.push_back("string");
    } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum")) {
      types.push_back("number");
    } else {
      return JsonGrammar::kAny;
    }
    if (flag(s, "nullable", path) && std::find(types.begin(), types.end(), "null") == types.end()) types.push_back("null");
    if (types.size() == 1) return typed(s, types[0], path);
    JsonGrammar::Node n;
    n.kind = Kind::AnyOf;
    for (const std::string& t : types) n.options.push_back(typed(s, t, path));
    return add(std::move(n));
  }

  // Each node's shortest valid text; refuses schemas where some node has none.
  void minimal_values() {
    auto& m = g_.minimal;
    m.assign(g_.nodes.size(), "");
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < g_.nodes.size(); ++i) {
        std::string v;
        if (!minimal_of(g_.nodes[i], &v)) continue;
        if (m[i].empty() || v.size() < m[i].size()) m[i] = std::move(v), changed = true;
      }
    }
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      if (m[i].empty()) fail(where_[i], ": no value satisfies this schema (a recursion with no way out?)");
  }

  std::vector<std::string> where_;  // per node: its path in the schema

 private:
  int32_t add(JsonGrammar::Node n, const std::string& path = "") {
    g_.nodes.push_back(std::move(n));
    where_.push_back(path.empty() ? current_ : path);
    return int32_t(g_.nodes.size() - 1);
  }
  int32_t literal_node(std::vector<std::string> lits) {
    std::sort(lits.begin(), lits.end());
    lits.erase(std::unique(lits.begin(), lits.end()), lits.end());
    JsonGrammar::Node n;
    n.kind = Kind::Literal;
    n.literals = std::move(lits);
    return add(std::move(n));
  }
  // Keywords beside `key` other than annotations (and `allowed`) are refused rather than ignored.
  void only(const json& s, const std::string& path, const char* key, std::initializer_list<const char*> allowed) {
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      if (k == key || kAnnotations.count(k)) continue;
      if (std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) continue;
      fail(path, ": '", k, "' beside '", key, "' is not supported");
    }
  }
  int32_t ref(const json& r, const std::string& path) {
    if (!r.is_string()) fail(path, ": '$ref' must be a string");
    const std::string target = r.get<std::string>();
    if (auto it = refs_.find(target); it != refs_.end()) return it->second;
    if (target.empty() || target[0] != '#') fail(path, ": '$ref' ", target, " is not supported (only references inside the schema, #/...)");
    const json* t = nullptr;
    try {
      t = &root_.at(json::json_pointer(target.substr(1)));
    } catch (const std::exception&) {
      fail(path, ": '$ref' ", target, " points to nothing in the schema");
    }
    JsonGrammar::Node alias;  // filled once the target is compiled (it may refer back here)
    alias.kind = Kind::AnyOf;
    const int32_t id = add(std::move(alias), path);
    refs_[target] = id;
    const int32_t body = compile(*t, target);
    if (body == id) fail(path, ": '$ref' ", target, " refers to itself");
    g_.nodes[size_t(id)].options = {body};
    // A chain of references that comes back to itself before reaching any value never ends.
    std::set<int32_t> seen{id};
    for (int32_t k = body; g_.nodes[size_t(k)].kind == Kind::AnyOf && g_.nodes[size_t(k)].options.size() == 1;) {
      k = g_.nodes[size_t(k)].options[0];
      if (!seen.insert(k).second) fail(path, ": '$ref' ", target, " is a cycle of references");
    }
    return id;
  }
  static bool flag(const json& s, const char* key, const std::string& path) {
    auto it = s.find(key);
    if (it == s.end() || it->is_null()) return false;
    if (!it->is_boolean()) fail(path, ": '", key, "' must be true or false");
    return it->get<bool>();
  }
  int64_t count(const json& s, const char* key, int64_t dflt, const std::string& path) {
    auto it = s.find(key);
    if (it == s.end()) return dflt;
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX)
      fail(path, ": '", key, "' must be a non-negative integer");
    return it->get<int64_t>();
  }
  int32_t typed(const json& s, const std::string& type, const std::string& path) {
    JsonGrammar::Node n;
    current_ = path;
    if (type == "null") return literal_node({"null"});
    if (type == "boolean") return literal_node({"false", "true"});
    if (type == "string") {
      n.kind = Kind::String;
      n.min_length = count(s, "minLength", 0, path);
      n.max_length = count(s, "maxLength", INT32_MAX, path);
      if (n.min_length > n.max_length) fail(path, ": minLength is above maxLength");
      std::string pattern;
      if (auto p = s.find("pattern"); p != s.end()) {
        if (!p->is_string()) fail(path, ": 'pattern' must be a string");
        pattern = p->get<std::string>();
      } else if (auto f = s.find("format"); f != s.end() && f->is_string() && format_pattern(f->get<std::string>())) {
        pattern = format_pattern(f->get<std::string>());
      }
      if (!pattern.empty()) {
        if (s.contains("minLength") || s.contains("maxLength")) fail(path, ": minLength/maxLength together with a pattern or format are not supported");
        g_.patterns.push_back(compile_pattern(pattern, path));
        n.pattern = int32_t(g_.patterns.size() - 1);
      }
      return add(std::move(n));
    }
    if (type == "number" || type == "integer") {
      n.kind = type == "integer" ? Kind::Integer : Kind::Number;
      auto bound = [&](const char* key, double* v) {
        auto it = s.find(key);
        if (it == s.end() || it->is_boolean()) return false;
        if (!it->is_number()) fail(path, ": '", key, "' must be a number");
        *v = it->get<double>();
        if (!std::isfinite(*v) || std::fabs(*v) > 1e15) fail(path, ": '", key, "' is beyond what is supported (|x| <= 1e15)");
        return n.bounded = true;
      };
      bound("minimum", &n.minimum);
      bound("maximum", &n.maximum);
      double x;
      if (bound("exclusiveMinimum", &x)) {
        if (!s.contains("minimum") || x >= n.minimum) n.minimum = x, n.exclusive_min = true;
      } else if (flag(s, "exclusiveMinimum", path)) {
        n.exclusive_min = true;  // draft 4: a flag on minimum
      }
      if (bound("exclusiveMaximum", &x)) {
        if (!s.contains("maximum") || x <= n.maximum) n.maximum = x, n.exclusive_max = true;
      } else if (flag(s, "exclusiveMaximum", path)) {
        n.exclusive_max = true;
      }
      return add(std::move(n));
    }
    if (type == "array") {
      n.kind = Kind::Array;
      n.min_items = count(s, "minItems", 0, path);
      n.max_items = count(s, "maxItems", INT32_MAX, path);
      std::vector<json> prefix;
      json rest = true;
      if (auto p = s.find("prefixItems"); p != s.end()) {
        if (!p->is_array()) fail(path, ": 'prefixItems' must be an array");
        prefix.assign(p->begin(), p->end());
        if (s.contains("items")) rest = s["items"];
      } else if (auto it = s.find("items"); it != s.end()) {
        if (it->is_array()) {  // draft 4-7 tuples
          prefix.assign(it->begin(), it->end());
          if (s.contains("additionalItems")) rest = s["additionalItems"];
        } else {
          rest = *it;
        }
      }
      for (size_t i = 0; i < prefix.size(); ++i) n.prefix_items.push_back(compile(prefix[i], str_cat(path, "/prefixItems/", i)));
      n.items = rest.is_boolean() && !rest.get<bool>() ? -1 : compile(rest, path + "/items");
      const int64_t most = n.items < 0 ? std::min<int64_t>(n.max_items, int64_t(prefix.size())) : n.max_items;
      if (n.min_items > most) fail(path, ": minItems is above the number of items allowed");
      current_ = path;
      return add(std::move(n));
    }
    if (type == "object") {
      n.kind = Kind::Object;
      std::vector<std::pair<std::string, json>> props;
      if (auto p = s.find("properties"); p != s.end()) {
        if (!p->is_object()) fail(path, ": 'properties' must be an object");
        for (const auto& [k, v] : p->items()) props.emplace_back(k, v);
      }
      json additional = s.value("additionalProperties", json(true));
      std::set<std::string> required;
      if (auto r = s.find("required"); r != s.end()) {
        if (!r->is_array()) fail(path, ": 'required' must be an array");
        for (const json& k : *r) {
          if (!k.is_string()) fail(path, ": 'required' entries must be strings");
          required.insert(k.get<std::string>());
        }
      }
      for (const std::string& k : required)  // required but not described: a value of additionalProperties
        if (std::none_of(props.begin(), props.end(), [&](const auto& p) { return p.first == k; })) {
          if (additional.is_boolean() && !additional.get<bool>())
            fail(path, ": '", k, "' is required but additionalProperties is false and it is not among the properties");
          props.emplace_back(k, additional);
        }
      if (props.size() > 64) fail(path, ": objects with more than 64 properties are not supported");
      std::vector<std::pair<std::string, size_t>> order;  // escaped name, index into props
      for (size_t i = 0; i < props.size(); ++i) {
        const std::string q = json(props[i].first).dump();
        order.emplace_back(q.substr(1, q.size() - 2), i);
      }
      std::sort(order.begin(), order.end());
      for (size_t i = 0; i < order.size(); ++i) {
        const auto& [name, src] = order[i];
        n.keys.push_back(name);
        n.order.push_back(int32_t(src));
        n.key_nodes.push_back(compile(props[src].second, path + "/properties/" + props[src].first));
        if (required.count(props[src].first)) n.required |= uint64_t(1) << i;
      }
      n.additional = additional.is_boolean() && !additional.get<bool>() ? -1 : compile(additional, path + "/additionalProperties");
      current_ = path;
      return add(std::move(n));
    }
    fail(path, ": unknown type '", type, "'");
  }

  bool minimal_of(const JsonGrammar::Node& n, std::string* out) const {
    const auto& m = g_.minimal;
    switch (n.kind) {
      case Kind::Any: *out = "0"; return true;
      case Kind::String:
        *out = n.pattern >= 0 ? "\"" + g_.patterns[size_t(n.pattern)].shortest[0] + "\"" : "\"" + std::string(size_t(n.min_length), 'a') + "\"";
        return true;
      case Kind::Number:
      case Kind::Integer: {
        JsonMatcher::Frame f;
        f.kind = json_grammar::kNumber;
        f.sub = 8;
        try {
          *out = json_grammar::number_finish(n, f);
        } catch (const Error&) {
          return false;
        }
        return true;
      }
      case Kind::Literal:
        *out = n.literals[0];
        for (const std::string& l : n.literals)
          if (l.size() < out->size()) *out = l;
        return true;
      case Kind::AnyOf: {
        bool any = false;
        for (int32_t k : n.options)
          if (!m[size_t(k)].empty() && (!any || m[size_t(k)].size() < out->size())) *out = m[size_t(k)], any = true;
        return any;
      }
      case Kind::Array: {
        *out = "[";
        for (int64_t i = 0; i < n.min_items; ++i) {
          const int32_t item = size_t(i) < n.prefix_items.size() ? n.prefix_items[size_t(i)] : n.items;
          if (m[size_t(item)].empty()) return false;
          if (i) *out += ',';
          *out += m[size_t(item)];
        }
        *out += ']';
        return true;
      }
      case Kind::Object: {
        *out = "{";
        bool first = true;
        std::vector<size_t> required;  // in the schema's order
        for (size_t i = 0; i < n.keys.size(); ++i)
          if (n.required >> i & 1) required.push_back(i);
        std::sort(required.begin(), required.end(), [&](size_t a, size_t b) { return n.order[a] < n.order[b]; });
        for (size_t i : required) {
          if (m[size_t(n.key_nodes[i])].empty()) return false;
          if (!first) *out += ',';
          first = false;
          *out += '"' + n.keys[i] + "\":" + m[size_t(n.key_nodes[i])];
        }
        *out += '}';
        return true;
      }
    }
    return false;
  }

  const json& root_;
  JsonGrammar& g_;
  std::map<std::string, int32_t> refs_;
  std::string current_ = "#";
};

// The fixed nodes every grammar starts with (JsonGrammar::kAny ... kAnyLiteral).
void add_fixed_nodes(JsonGrammar& g, std::vector<std::string>* where) {
  JsonGrammar::Node any;
  any.kind = Kind::Any;
  JsonGrammar::Node object;
  object.kind = Kind::Object;
  object.additional = JsonGrammar::kAny;
  JsonGrammar::Node array;
  array.kind = Kind::Array;
  array.items = JsonGrammar::kAny;
  JsonGrammar::Node string;
  string.kind = Kind::String;
  JsonGrammar::Node number;
  number.kind = Kind::Number;
  JsonGrammar::Node literal;
  literal.kind = Kind::Literal;
  literal.literals = {"false", "null", "true"};
  g.nodes = {any, object, array, string, number, literal};
  where->assign(g.nodes.size(), "#");
}

}  // namespace

std::shared_ptr<const JsonGrammar> JsonGrammar::compile(const json& schema) {
  auto g = std::make_shared<JsonGrammar>();
  Compiler c(schema, *g);
  add_fixed_nodes(*g, &c.where_);
  try {
    g->root = c.compile(schema, "#");
  } catch (const nlohmann::json::exception& e) {  // a keyword of the wrong type that no check above caught
    fail("the schema is malformed (", e.what(), ")");
  }
  c.minimal_values();
  return g;
}

std::shared_ptr<const JsonGrammar> JsonGrammar::any_object() {
  static const std::shared_ptr<const JsonGrammar> g = [] {
    auto g = std::make_shared<JsonGrammar>();
    std::vector<std::string> where;
    add_fixed_nodes(*g, &where);
    g->root = kAnyObject;
    g->minimal = {"0", "{}", "[]", "\"\"", "0", "null"};
    return std::shared_ptr<const JsonGrammar>(g);
  }();
  return g;
}

}  // namespace whale
