// The matcher: a pushdown automaton over bytes whose stack frames are grammar nodes being
// written. A position is the innermost frame plus a link to the frames below it in an arena,
// so positions share their stacks and copying one costs a few dozen bytes. Under anyOf a
// value start forks into one position per alternative that accepts its first byte.
#include <algorithm>
#include <cmath>
#include <bit>
#include <cstring>

#include "core/error.h"
#include "runtime/json_grammar.h"
#include "runtime/json_grammar_internal.h"
#include "tokenizer/tokenizer.h"

namespace whale {

using namespace json_grammar;
using Kind = JsonGrammar::Kind;

bool JsonMatcher::Frame::operator==(const Frame& o) const {
  return node == o.node && kind == o.kind && phase == o.phase && sub == o.sub && flags == o.flags && lo == o.lo &&
         hi == o.hi && pos == o.pos && count == o.count && dfa == o.dfa && value == o.value && seen == o.seen;
}

namespace json_grammar {

int string_byte(uint8_t& sub, unsigned char c) {
  switch (sub) {
    case kStrNormal:
      if (c == '"') return kClose;
      if (c == '\\') return sub = kStrEscape, kStart;
      if (c < 0x20) return kReject;
      if (c < 0x80) return kStartEnd;
      if (c >= 0xC2 && c <= 0xDF) return sub = kU1, kStart;
      if (c == 0xE0) return sub = kUE0, kStart;
      if (c == 0xED) return sub = kUED, kStart;
      if (c >= 0xE1 && c <= 0xEF) return sub = kU2, kStart;
      if (c == 0xF0) return sub = kUF0, kStart;
      if (c >= 0xF1 && c <= 0xF3) return sub = kU3, kStart;
      if (c == 0xF4) return sub = kUF4, kStart;
      return kReject;
    case kStrEscape:
      if (c == 'u') return sub = kStrHex4, kInside;
      if (c == 0 || !std::strchr("\"\\/bfnrt", c)) return kReject;
      return sub = kStrNormal, kEnd;
    case kStrHex4:
    case kStrHex3:
    case kStrHex2:
    case kStrHex1:
    case kStrHexD:
    case kStrHiHex2:
    case kStrHiHex1:
    case kStrLoC: {
      const int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (v < 0) return kReject;
      switch (sub) {
        case kStrHex4: sub = v == 0xD ? kStrHexD : kStrHex3; break;
        case kStrHexD:
          if (v >= 0xC) return kReject;  // a low surrogate on its own
          sub = v >= 0x8 ? kStrHiHex2 : kStrHex2;
          break;
        case kStrHiHex2: sub = kStrHiHex1; break;
        case kStrHiHex1: sub = kStrLoSlash; break;
        case kStrLoC:
          if (v < 0xC) return kReject;
          sub = kStrHex2;
          break;
        default: sub = sub == kStrHex1 ? uint8_t(kStrNormal) : uint8_t(sub + 1);
      }
      return sub == kStrNormal ? kEnd : kInside;
    }
    case kStrLoSlash: return c == '\\' ? (sub = kStrLoU, kInside) : kReject;
    case kStrLoU: return c == 'u' ? (sub = kStrLoD, kInside) : kReject;
    case kStrLoD: return (c == 'd' || c == 'D') ? (sub = kStrLoC, kInside) : kReject;
    default: {
      const auto [lo, hi, then] = utf8_next(sub);
      if (c < lo || c > hi) return kReject;
      sub = then;
      return then == kStrNormal ? kEnd : kInside;
    }
  }
}

std::string string_finish(uint8_t sub) {
  std::string out;
  while (sub != kStrNormal) {
    if (sub == kStrEscape) out += 'n';
    else if ((sub >= kStrHex4 && sub <= kStrHex1) || sub == kStrHexD || sub == kStrHiHex2 || sub == kStrHiHex1) out += '0';
    else if (sub == kStrLoSlash) out += '\\';
    else if (sub == kStrLoU) out += 'u';
    else if (sub == kStrLoD) out += 'd';
    else if (sub == kStrLoC) out += 'c';
    else out += char(std::get<0>(utf8_next(sub)));
    string_byte(sub, static_cast<unsigned char>(out.back()));
  }
  return out;
}

// Number sub-states: 0 after '-', 1 after a leading 0, 2 in integer digits, 3 after '.',
// 4 in fraction digits, 5 after 'e', 6 after the exponent sign, 7 in exponent digits,
// 8 nothing yet.
bool number_can_end(uint8_t n) { return n == 1 || n == 2 || n == 4 || n == 7; }

namespace {
double pow10i(int k) { return std::pow(10.0, double(k)); }

// Whether some number the frame can still become lies within the node's bounds.
bool number_feasible(const JsonGrammar::Node& n, const JsonMatcher::Frame& f) {
  if (!n.bounded) return true;
  const bool integer = n.kind == Kind::Integer;
  const bool neg = f.flags & kNegative;
  // Integer bounds as integers.
  double lo_i = n.minimum, hi_i = n.maximum;
  if (integer) {
    lo_i = n.exclusive_min ? std::floor(n.minimum) + 1 : std::ceil(n.minimum);
    hi_i = n.exclusive_max ? std::ceil(n.maximum) - 1 : std::floor(n.maximum);
  }
  // Does [a, b) (magnitudes; b not reached unless `closed`) meet the bounds?
  auto meets = [&](double a, double b, bool closed) {
    double x_lo = neg ? -b : a, x_hi = neg ? -a : b;  // values in [x_lo, x_hi]
    const bool lo_open = neg && !closed, hi_open = !neg && !closed;
    if (integer) {
      x_lo = std::max(x_lo, lo_i);
      x_hi = std::min(x_hi, hi_i);
      return x_lo <= x_hi;
    }
    // some x in the interval with x >= min (> when exclusive) and x <= max (< when exclusive)
    const bool below_max = (lo_open || n.exclusive_max) ? x_lo < n.maximum : x_lo <= n.maximum;
    const bool above_min = (hi_open || n.exclusive_min) ? x_hi > n.minimum : x_hi >= n.minimum;
    return below_max && above_min && x_lo <= x_hi;
  };
  switch (f.sub) {
    case 8:  // nothing yet
      return true;
    case 0:  // after '-': any magnitude
      return integer ? lo_i <= 0 : (n.exclusive_min ? n.minimum < 0 : n.minimum <= 0);
    case 1:  // "0": exactly 0 for integers; [0, 1) with a fraction
      return integer ? meets(0, 0, true) : (meets(0, 0, true) || meets(0, 1, false));
    case 2: {
      for (int k = 0; f.count + k <= kMaxBoundedDigits; ++k) {
        const double a = f.value * pow10i(k);
        if (integer ? meets(a, (f.value + 1) * pow10i(k) - 1, true) : (meets(a, a, true) || meets(a, (f.value + 1) * pow10i(k), false)))
          return true;
      }
      return false;
    }
    case 3:
    case 4:  // value so far with f.pos fraction digits: [value, value + 10^-pos)
      return meets(f.value, f.value, true) || meets(f.value, f.value + pow10i(-f.pos), false);
    default:
      return false;  // exponents are refused for bounded numbers
  }
}
}  // namespace

bool number_in_bounds(const JsonGrammar::Node& n, const JsonMatcher::Frame& f) {
  if (!n.bounded) return true;
  const double x = (f.flags & kNegative) ? -f.value : f.value;
  if (n.exclusive_min ? !(x > n.minimum) : !(x >= n.minimum)) return false;
  if (n.exclusive_max ? !(x < n.maximum) : !(x <= n.maximum)) return false;
  return true;
}

bool number_step(const JsonGrammar::Node& n, JsonMatcher::Frame& f, unsigned char c) {
  const bool digit = c >= '0' && c <= '9';
  const bool integer = n.kind == Kind::Integer;
  const int d = c - '0';
  auto int_digit = [&] {
    if (f.count >= (n.bounded ? kMaxBoundedDigits : kMaxDigits)) return false;
    f.value = f.value * 10 + d;
    ++f.count;
    return true;
  };
  bool ok = false;
  switch (f.sub) {
    case 8:
      if (c == '-') ok = (f.flags |= kNegative, f.sub = 0, true);
      else if (digit) ok = (f.sub = d == 0 ? 1 : 2, int_digit());
      break;
    case 0:
      if (digit) ok = (f.sub = d == 0 ? 1 : 2, int_digit());
      break;
    case 1:
    case 2:
      if (f.sub == 2 && digit) ok = int_digit();
      else if (c == '.' && !integer) ok = (f.sub = 3, true);
      else if ((c == 'e' || c == 'E') && !integer && !n.bounded) ok = (f.sub = 5, true);
      break;
    case 3:
    case 4:
      if (digit) {
        if (f.pos >= (n.bounded ? kMaxBoundedDigits : kMaxDigits)) return false;
        f.sub = 4;
        ++f.pos;
        f.value += d * pow10i(-f.pos);
        ok = true;
      } else if (f.sub == 4 && (c == 'e' || c == 'E') && !n.bounded) {
        ok = (f.sub = 5, f.pos = 0, true);
      }
      break;
    case 5:  // exponents of at most two digits: every number stays a finite double
      if (c == '+' || c == '-') ok = (f.sub = 6, true);
      else if (digit) ok = (f.sub = 7, f.pos = 1, true);
      break;
    case 6:
    case 7:
      if (digit && (f.sub == 6 || f.pos < 2)) ok = (f.sub = 7, ++f.pos, true);
      break;
  }
  return ok && number_feasible(n, f);
}

namespace {
// Greedy: the first byte in `order` that keeps a valid number within reach, until one may end.
bool number_greedy(const JsonGrammar::Node& n, JsonMatcher::Frame f, const char* order, std::string* out) {
  for (int guard = 0; guard < 48; ++guard) {
    if (number_can_end(f.sub) && number_in_bounds(n, f)) return true;
    bool moved = false;
    for (const char* c = order; *c && !moved; ++c) {
      JsonMatcher::Frame g = f;
      if (number_step(n, g, static_cast<unsigned char>(*c))) {
        f = g;
        *out += *c;
        moved = true;
      }
    }
    if (!moved) return false;
  }
  return false;
}
}  // namespace

std::string number_finish(const JsonGrammar::Node& n, JsonMatcher::Frame f) {
  std::string a, b;  // zeros first (0, 100) or ones first (0.1 rather than 0.000…01): the shorter
  const bool ok_a = number_greedy(n, f, "0123456789.-", &a), ok_b = number_greedy(n, f, "1234567890.-", &b);
  if (ok_a && (!ok_b || a.size() <= b.size())) return a;
  if (ok_b) return b;
  throw Error("no number satisfies the schema's bounds");
}

}  // namespace json_grammar

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int32_t item_node(const JsonGrammar::Node& n, int32_t index) {
  if (size_t(index) < n.prefix_items.size()) return n.prefix_items[size_t(index)];
  return n.items;
}

static int64_t max_items(const JsonGrammar::Node& n) {
  return n.items < 0 ? std::min<int64_t>(n.max_items, int64_t(n.prefix_items.size())) : n.max_items;
}

// Whether declared key k may come next: not written yet, after every key written, and no
// required key left out before it.
static bool key_open(const JsonGrammar::Node& n, uint64_t seen, int32_t k) {
  if (seen >> k & 1) return false;
  const int32_t p = n.order[size_t(k)];
  for (uint64_t m = seen; m; m &= m - 1)
    if (n.order[size_t(std::countr_zero(m))] > p) return false;
  for (uint64_t m = n.required & ~seen; m; m &= m - 1)
    if (n.order[size_t(std::countr_zero(m))] < p) return false;
  return true;
}

// Whether an object frame may still take a key.
static bool can_add_key(const JsonGrammar::Node& n, uint64_t seen) {
  if (n.additional >= 0) return true;
  for (int32_t k = 0; k < int32_t(n.keys.size()); ++k)
    if (key_open(n, seen, k)) return true;
  return false;
}

// The required keys not yet written, in the schema's order.
static std::vector<int32_t> required_left(const JsonGrammar::Node& n, uint64_t seen) {
  std::vector<int32_t> r;
  for (uint64_t m = n.required & ~seen; m; m &= m - 1) r.push_back(std::countr_zero(m));
  std::sort(r.begin(), r.end(), [&](int32_t a, int32_t b) { return n.order[size_t(a)] < n.order[size_t(b)]; });
  return r;
}

// The first key among [lo, hi) that may come next; -1 when none.
static int32_t first_open(const JsonGrammar::Node& n, uint64_t seen, int32_t lo, int32_t hi) {
  for (int32_t i = lo; i < hi; ++i)
    if (key_open(n, seen, i)) return i;
  return -1;
}

// The entries of sorted `words` among [lo, hi) with byte c at `pos` (they all share the bytes
// before it): a range again, empty (lo >= hi) when none has it.
static std::pair<int32_t, int32_t> narrow(const std::vector<std::string>& words, int32_t lo, int32_t hi, int32_t pos,
                                          unsigned char c) {
  int32_t first = hi, last = lo;
  for (int32_t i = lo; i < hi; ++i) {
    const std::string& w = words[size_t(i)];
    if (w.size() > size_t(pos) && static_cast<unsigned char>(w[size_t(pos)]) == c) first = std::min(first, i), last = i + 1;
  }
  return {first, last};
}

// A key's name begins (a JSON key or a DSML parameter name): every property is a candidate.
static void begin_key(const JsonGrammar::Node& n, JsonMatcher::Frame& f) {
  f.lo = 0, f.hi = int32_t(n.keys.size()), f.pos = 0, f.sub = kStrNormal;
  f.flags = uint8_t((f.flags & ~kOtherKey) | (f.hi == 0 ? kOtherKey : 0));
}

// One byte of a key's name, which the string lexer accepted: narrows the candidates, or the name
// leaves them (a key of its own, where additionalProperties allows one). False when the object
// can take no key written so.
static bool key_byte(const JsonGrammar::Node& n, JsonMatcher::Frame& f, unsigned char c) {
  if (!(f.flags & kOtherKey)) {
    const auto [lo, hi] = narrow(n.keys, f.lo, f.hi, f.pos, c);
    // Written keys stay candidates where other keys are allowed: they must be told apart from new ones.
    if (lo < hi && (n.additional >= 0 || first_open(n, f.seen, lo, hi) >= 0)) {
      f.lo = lo, f.hi = hi;
    } else {
      if (n.additional < 0) return false;
      f.flags |= kOtherKey;
    }
  }
  ++f.pos;
  return true;
}

// The key's name ended: the property it names, -1 for a key of its own, -2 when the object takes
// no such key (written already, out of order, not declared; an empty one unless `empty_ok`).
static int32_t close_key(const JsonGrammar::Node& n, const JsonMatcher::Frame& f, bool empty_ok) {
  if (!(f.flags & kOtherKey) && f.lo < f.hi && n.keys[size_t(f.lo)].size() == size_t(f.pos))
    return key_open(n, f.seen, f.lo) ? f.lo : -2;
  if (n.additional < 0 || (!empty_ok && f.pos == 0)) return -2;
  return -1;
}

// The rest of a key's name begun in f: the first candidate that may come next (*prop its index),
// else a name of its own (*prop = -1) past the property names the text so far begins (and not
// empty unless `empty_ok`). Without the closing quote.
static std::string finish_key(const JsonGrammar::Node& n, const JsonMatcher::Frame& f, bool empty_ok, int32_t* prop) {
  const bool other = f.flags & kOtherKey;
  *prop = other ? -1 : first_open(n, f.seen, f.lo, f.hi);
  if (*prop >= 0) return n.keys[size_t(*prop)].substr(size_t(f.pos));
  std::string out = string_finish(f.sub);
  if (!other || (!empty_ok && f.pos == 0)) {
    const std::string key = (other ? std::string() : n.keys[size_t(f.lo)].substr(0, size_t(f.pos))) + out;
    std::string extra = "_";
    while (std::binary_search(n.keys.begin(), n.keys.end(), key + extra)) extra += '_';
    out += extra;
  }
  return out;
}

// The node behind one-option alternatives ($refs).
static int32_t resolve(const JsonGrammar& g, int32_t k) {
  while (g.nodes[size_t(k)].kind == Kind::AnyOf && g.nodes[size_t(k)].options.size() == 1) k = g.nodes[size_t(k)].options[0];
  return k;
}

// --- the matcher ---------------------------------------------------------------------------

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonGrammar> grammar, Syntax syntax) : g_(std::move(grammar)) {
  State s;
  s.top.kind = kValue;
  s.top.node = g_->root;
  if (syntax == Syntax::Dsml) {  // the root object's frame, waiting for its first tag
    int32_t root = resolve(*g_, g_->root);
    if (g_->nodes[size_t(root)].kind != Kind::Object) root = JsonGrammar::kAnyObject;  // parameters are an object
    s.top.kind = kObject;
    s.top.node = root;
    s.top.phase = kDsOpen;
    s.top.lo = 3;
  }
  states_.push_back(s);
}

// --- DSML parameters -------------------------------------------------------------------------

namespace {
const std::string kParamOpen = "<｜DSML｜parameter name=\"";
const std::string kInvokeClose = "</｜DSML｜invoke>";
const std::string kParamClose = "</｜DSML｜parameter>";
const std::string kAttr[2] = {"\" string=\"true\">", "\" string=\"false\">"};

// Which attributes a property's value may use: bit 0 string="true" (raw text: a string node or
// any value), bit 1 string="false" (JSON: anything but a plain string node).
uint8_t attrs_for(const JsonGrammar& g, int32_t node) {
  const Kind k = g.nodes[size_t(resolve(g, node))].kind;
  return k == Kind::String ? 1 : k == Kind::Any ? 3 : 2;
}
// Raw text (string="true"): any character but control characters other than \t \n \r.
int raw_byte(uint8_t& sub, unsigned char c) {
  if (sub == kStrNormal && c < 0x80) return (c >= 0x20 || c == '\n' || c == '\t' || c == '\r') ? kStartEnd : kReject;
  if (sub == kStrNormal && (c == '"' || c == '\\')) return kStartEnd;
  return string_byte(sub, c);
}
}  // namespace

// Frame use in DSML phases: lo = alternatives still matching (bit mask) in kDsOpen/kDsAttr,
// keys [lo, hi) in kDsKey; pos = bytes of the tag matched (or of the key); count = the property
// being written; hi = the raw value's length in code points; dfa = its pattern state.
void JsonMatcher::step_dsml(const State& s, unsigned char c, std::vector<State>& out) const {
  const Frame& f = s.top;
  const JsonGrammar::Node& n = g_->nodes[size_t(f.node)];
  State t = s;
  Frame& o = t.top;
  switch (f.phase) {
    case kDsOpen: {  // "<｜DSML｜parameter name=\"" (a key may come) or "</｜DSML｜invoke>" (all required written)
      uint8_t alive = 0;
      if ((f.lo & 1) && can_add_key(n, f.seen) && kParamOpen[size_t(f.pos)] == char(c)) alive |= 1;
      if ((f.lo & 2) && (n.required & ~f.seen) == 0 && kInvokeClose[size_t(f.pos)] == char(c)) alive |= 2;
      if (!alive) return;
      t.ws = 0;
      o.lo = alive;
      ++o.pos;
      if ((alive & 2) && size_t(o.pos) == kInvokeClose.size()) {
        end_value(t, nullptr, out);
      } else if ((alive & 1) && size_t(o.pos) == kParamOpen.size()) {
        o.phase = kDsKey;
        begin_key(n, o);
        out.push_back(t);
      } else {
        out.push_back(t);
      }
      return;
    }
    case kDsKey: {
      if (c == '"') {  // the name ends; the attribute begins
        const int32_t prop = close_key(n, f, false);
        if (prop == -2) return;
        o.phase = kDsAttr;
        o.count = prop;
        o.lo = attrs_for(*g_, prop >= 0 ? n.key_nodes[size_t(prop)] : n.additional);
        o.pos = 1;
        out.push_back(t);
        return;
      }
      if (c == '\\' || string_byte(o.sub, c) == kReject || !key_byte(n, o, c)) return;
      out.push_back(t);
      return;
    }
    case kDsAttr: {
      uint8_t alive = 0;
      for (int a = 0; a < 2; ++a)
        if ((f.lo >> a & 1) && kAttr[a][size_t(f.pos)] == char(c)) alive |= uint8_t(1 << a);
      if (!alive) return;
      o.lo = alive;
      ++o.pos;
      const int32_t prop = f.count;
      const int32_t child = prop >= 0 ? n.key_nodes[size_t(prop)] : n.additional;
      if ((alive & 1) && size_t(o.pos) == kAttr[0].size()) {  // a raw string follows
        if (prop >= 0) o.seen |= uint64_t(1) << prop;
        o.phase = kDsRaw;
        o.hi = 0, o.dfa = 0, o.sub = kStrNormal, o.pos = 0;
        out.push_back(t);
      } else if ((alive & 2) && size_t(o.pos) == kAttr[1].size()) {  // a JSON value follows
        if (prop >= 0) o.seen |= uint64_t(1) << prop;
        o.phase = kDsAfterValue;
        o.pos = 0;
        State v = t;
        v.rest = push_frame(o, s.rest);
        ++v.depth;
        v.top = Frame{};
        v.top.kind = kValue;
        v.top.node = child;
        out.push_back(v);
      } else {
        out.push_back(t);
      }
      return;
    }
    case kDsRaw: {
      const int32_t prop = f.count;
      const JsonGrammar::Node& v = g_->nodes[size_t(resolve(*g_, prop >= 0 ? n.key_nodes[size_t(prop)] : n.additional))];
      const bool is_string = v.kind == Kind::String;
      // '<' may open the closing tag, when the value is long enough and matches its pattern...
      if (c == '<' && f.sub == kStrNormal) {
        const bool done = !is_string || (f.hi >= v.min_length && (v.pattern < 0 || g_->patterns[size_t(v.pattern)].accepting[size_t(f.dfa)]));
        if (done) {
          State close = t;
          close.top.phase = kDsClose;
          close.top.pos = 1;
          out.push_back(close);
        }
      }
      // ... or be text, as any other character.
      const bool code_point_start = f.sub == kStrNormal;
      if (raw_byte(o.sub, c) == kReject) return;
      if (is_string) {
        if (code_point_start && ++o.hi > v.max_length) return;
        if (v.pattern >= 0) {
          o.dfa = g_->patterns[size_t(v.pattern)].next[size_t(f.dfa) * 256 + c];
          if (o.dfa < 0) return;
        }
      }
      out.push_back(t);
      return;
    }
    case kDsClose:
    case kDsAfterValue:
      if (kParamClose[size_t(f.pos)] != char(c)) return;
      t.ws = 0;
      o.phase = kDsClose;
      if (size_t(++o.pos) == kParamClose.size()) {
        o.phase = kDsOpen;
        o.lo = 3, o.pos = 0;
      }
      out.push_back(t);
      return;
  }
}

// The shortest value of node `child` under attribute a (0: string="true", raw text; 1: JSON), and
// the parameter's closing tag.
std::string JsonMatcher::dsml_value(int32_t child, int a) const {
  const std::string& m = g_->minimal[size_t(child)];
  return (a == 0 && m.size() >= 2 && m.front() == '"' ? m.substr(1, m.size() - 2) : m) + kParamClose + "\n";
}

// The attribute a value of node `child` is written with when the choice is ours: raw text where allowed.
static int preferred_attr(const JsonGrammar& g, int32_t child) { return (attrs_for(g, child) & 1) ? 0 : 1; }

std::string JsonMatcher::dsml_parameter(const JsonGrammar::Node& n, int32_t prop) const {
  const int32_t child = n.key_nodes[size_t(prop)];
  const int a = preferred_attr(*g_, child);
  return kParamOpen + n.keys[size_t(prop)] + kAttr[a] + dsml_value(child, a);
}

std::string JsonMatcher::complete_dsml(Frame& f) const {
  const JsonGrammar::Node& n = g_->nodes[size_t(f.node)];
  std::string out;
  const int32_t prop = f.count;  // the property being written (kDsAttr and later)
  auto child_node = [&] { return prop >= 0 ? n.key_nodes[size_t(prop)] : n.additional; };
  switch (f.phase) {
    case kDsOpen:
      if (f.pos > 0) {  // inside a tag: finish it
        if (f.lo & 2) return kInvokeClose.substr(size_t(f.pos));  // alive only once every required key was written
        out += kParamOpen.substr(size_t(f.pos));
        f.phase = kDsKey;
        begin_key(n, f);
        return out + complete_dsml(f);
      }
      break;
    case kDsKey: {
      int32_t k;
      out += finish_key(n, f, false, &k);
      const int32_t c = k >= 0 ? n.key_nodes[size_t(k)] : n.additional;
      if (k >= 0) f.seen |= uint64_t(1) << k;
      const int a = preferred_attr(*g_, c);
      out += kAttr[a] + dsml_value(c, a);
      break;
    }
    case kDsAttr: {
      const int a = (f.lo & 1) ? 0 : 1;
      out += kAttr[a].substr(size_t(f.pos));
      if (prop >= 0) f.seen |= uint64_t(1) << prop;
      out += dsml_value(child_node(), a);
      break;
    }
    case kDsRaw: {
      const JsonGrammar::Node& v = g_->nodes[size_t(resolve(*g_, child_node()))];
      if (v.kind == Kind::String && v.pattern >= 0) {
        out += g_->patterns[size_t(v.pattern)].shortest[size_t(f.dfa)];
      } else {
        out += string_finish(f.sub);
        if (v.kind == Kind::String && f.hi < v.min_length) out += std::string(size_t(v.min_length - f.hi), 'a');
      }
      out += kParamClose + "\n";
      break;
    }
    case kDsClose:
    case kDsAfterValue:
      out += kParamClose.substr(size_t(f.pos)) + "\n";
      break;
  }
  for (int32_t i : required_left(n, f.seen)) out += dsml_parameter(n, i);
  return out + kInvokeClose;
}

int32_t JsonMatcher::push_frame(const Frame& f, int32_t rest) const {
  arena_.push_back({f, rest});
  return int32_t(arena_.size() - 1);
}

void JsonMatcher::pop_into(State& s) const {
  if (s.rest < 0) {
    s.top = Frame{};
    s.top.kind = kDone;
    return;
  }
  const Link& l = arena_[size_t(s.rest)];
  s.top = l.frame;
  s.rest = l.rest;
  --s.depth;
}

// The top value ended; `reprocess` (if set) is a byte that did not belong to it (after a
// number or an ambiguous literal) and is stepped in the enclosing frame.
void JsonMatcher::end_value(State s, unsigned char* reprocess, std::vector<State>& out) const {
  pop_into(s);
  if (reprocess) step(s, *reprocess, out);
  else out.push_back(s);
}

void JsonMatcher::start_value(int32_t node, unsigned char c, const State& s, std::vector<State>& out) const {
  const JsonGrammar::Node& n = g_->nodes[size_t(node)];
  State t = s;
  t.ws = 0;
  t.top = Frame{};
  t.top.node = node;
  switch (n.kind) {
    case Kind::Any:
      for (int32_t k : {JsonGrammar::kAnyObject, JsonGrammar::kAnyArray, JsonGrammar::kAnyString, JsonGrammar::kAnyNumber, JsonGrammar::kAnyLiteral})
        start_value(k, c, s, out);
      return;
    case Kind::AnyOf:
      for (int32_t k : n.options) start_value(k, c, s, out);
      return;
    case Kind::Object:
      if (c != '{' || s.depth >= kMaxDepth) return;
      t.top.kind = kObject;
      t.top.phase = kObjStart;
      out.push_back(t);
      return;
    case Kind::Array:
      if (c != '[' || s.depth >= kMaxDepth) return;
      t.top.kind = kArray;
      t.top.phase = kArrStart;
      out.push_back(t);
      return;
    case Kind::String:
      if (c != '"') return;
      t.top.kind = kString;
      t.top.dfa = 0;
      out.push_back(t);
      return;
    case Kind::Number:
    case Kind::Integer:
      t.top.kind = kNumber;
      t.top.sub = 8;
      if (!number_step(n, t.top, c)) return;
      out.push_back(t);
      return;
    case Kind::Literal: {
      t.top.kind = kLiteral;
      t.top.lo = 0;
      t.top.hi = int32_t(n.literals.size());
      t.top.pos = 0;
      step(t, c, out);
      return;
    }
  }
}

void JsonMatcher::step(const State& s, unsigned char c, std::vector<State>& out) const {
  const Frame& f = s.top;
  const JsonGrammar::Node& n = g_->nodes[size_t(f.node)];
  // Whitespace outside strings: bounded runs where the grammar allows it.
  const bool structural = f.kind == kValue || f.kind == kDone || f.kind == kArray ||
                          (f.kind == kObject && (f.phase < kDsOpen ? f.phase != kObjKey : ((f.phase == kDsOpen && f.pos == 0) || (f.phase == kDsAfterValue && f.pos == 0))));
  // A run is one space, or a newline and up to kMaxWhitespace - 1 spaces or tabs of indentation
  // (compact or pretty-printed JSON, never a page of blank lines).
  if (structural && is_ws(c)) {
    if (f.kind == kValue && s.rest < 0) return;  // the text starts with the value itself
    if (f.kind == kDone && f.count >= kMaxTrailing) return;
    State t = s;
    if (s.ws == 0) {
      if (c != ' ' && c != '\n') return;
      t.ws = c == ' ' ? kOneSpace : 1;
    } else {
      if (s.ws == kOneSpace || (c != ' ' && c != '\t') || s.ws >= kMaxWhitespace) return;
      ++t.ws;
    }
    if (f.kind == kDone) ++t.top.count;
    out.push_back(t);
    return;
  }
  switch (f.kind) {
    case kDone:
      return;
    case kValue:
      start_value(f.node, c, s, out);
      return;
    case kObject: {
      if (f.phase >= kDsOpen) return step_dsml(s, c, out);
      State t = s;
      t.ws = 0;
      Frame& o = t.top;
      switch (f.phase) {
        case kObjStart:
        case kObjKeyNext:
          if (c == '"' && can_add_key(n, f.seen)) {
            o.phase = kObjKey;
            begin_key(n, o);
            out.push_back(t);
          } else if (c == '}' && f.phase == kObjStart && (n.required & ~f.seen) == 0) {
            end_value(t, nullptr, out);
          }
          return;
        case kObjKey: {
          if (f.sub == kStrNormal && c == '"') {
            const int32_t prop = close_key(n, f, true);
            if (prop == -2) return;
            o.phase = kObjColon;
            o.count = prop;
            out.push_back(t);
            return;
          }
          if (string_byte(o.sub, c) == kReject || !key_byte(n, o, c)) return;
          out.push_back(t);
          return;
        }
        case kObjColon: {
          if (c != ':') return;
          const int32_t prop = f.count;
          o.phase = kObjAfter;
          if (prop >= 0) o.seen |= uint64_t(1) << prop;
          State v = t;
          v.rest = push_frame(o, s.rest);
          ++v.depth;
          v.top = Frame{};
          v.top.kind = kValue;
          v.top.node = prop >= 0 ? n.key_nodes[size_t(prop)] : n.additional;
          out.push_back(v);
          return;
        }
        case kObjAfter:
          if (c == ',' && can_add_key(n, f.seen)) {
            o.phase = kObjKeyNext;
            out.push_back(t);
          } else if (c == '}' && (n.required & ~f.seen) == 0) {
            end_value(t, nullptr, out);
          }
          return;
      }
      return;
    }
    case kArray: {
      State t = s;
      t.ws = 0;
      if (f.phase == kArrAfter) {
        if (c == ',' && f.count < max_items(n)) {
          t.top.phase = kArrNeed;
          out.push_back(t);
        } else if (c == ']' && f.count >= n.min_items) {
          end_value(t, nullptr, out);
        }
        return;
      }
      if (c == ']' && f.phase == kArrStart) {
        if (n.min_items == 0) end_value(t, nullptr, out);
        return;
      }
      if (f.count >= max_items(n)) return;
      const int32_t item = item_node(n, f.count);
      t.top.phase = kArrAfter;
      ++t.top.count;
      State v = t;
      v.rest = push_frame(t.top, s.rest);
      ++v.depth;
      start_value(item, c, v, out);
      return;
    }
    case kString: {
      State t = s;
      Frame& x = t.top;
      const bool code_point_start = f.sub == kStrNormal;
      const int r = string_byte(x.sub, c);
      if (r == kReject) return;
      if (r == kClose) {
        if (f.count < n.min_length) return;
        if (n.pattern >= 0 && !g_->patterns[size_t(n.pattern)].accepting[size_t(f.dfa)]) return;
        end_value(t, nullptr, out);
        return;
      }
      if (code_point_start && ++x.count > n.max_length) return;
      if (n.pattern >= 0) {
        if (c == '\\') return;  // escapes are not matched against patterns
        x.dfa = g_->patterns[size_t(n.pattern)].next[size_t(f.dfa) * 256 + c];
        if (x.dfa < 0) return;
      }
      out.push_back(t);
      return;
    }
    case kNumber: {
      State t = s;
      if (number_step(n, t.top, c)) {
        out.push_back(t);
        return;
      }
      if (!number_can_end(f.sub) || !number_in_bounds(n, f)) return;
      end_value(s, &c, out);
      return;
    }
    case kLiteral: {
      State t = s;
      Frame& x = t.top;
      const auto [lo, hi] = narrow(n.literals, x.lo, x.hi, x.pos, c);
      if (lo < hi) {
        x.lo = lo, x.hi = hi, ++x.pos;
        // A literal no other candidate extends ends here.
        if (hi - lo == 1 && n.literals[size_t(lo)].size() == size_t(x.pos)) end_value(t, nullptr, out);
        else out.push_back(t);
        return;
      }
      if (n.literals[size_t(f.lo)].size() == size_t(f.pos)) end_value(s, &c, out);  // a whole literal, then c
      return;
    }
  }
}

bool JsonMatcher::step_all(const std::vector<State>& in, unsigned char c, std::vector<State>& out) const {
  out.clear();
  for (const State& s : in) {
    const size_t first = out.size();
    step(s, c, out);
    for (size_t i = first; i < out.size(); ++i)  // drop positions that are already there
      for (size_t j = 0; j < i; ++j)
        if (out[j] == out[i]) {
          out.erase(out.begin() + std::ptrdiff_t(i--));
          break;
        }
  }
  return !out.empty();
}

bool JsonMatcher::accepts(std::string_view bytes) const {
  if (bytes.empty()) return false;
  const size_t mark = arena_.size();
  std::vector<State> a = states_, b;
  bool ok = true;
  for (unsigned char c : bytes) {
    if (!step_all(a, c, b)) {
      ok = false;
      break;
    }
    std::swap(a, b);
  }
  arena_.resize(mark);
  return ok;
}

void JsonMatcher::push(std::string_view bytes) {
  std::vector<State> b;
  for (unsigned char c : bytes) {
    if (!step_all(states_, c, b)) fail("JSON grammar: a byte it refused was pushed");
    std::swap(states_, b);
  }
}

bool JsonMatcher::complete() const { return complete_of(states_); }

bool JsonMatcher::complete_of(const std::vector<State>& states) const {
  for (const State& s : states) {
    if (s.top.kind == kDone) return true;
    if (s.rest >= 0) continue;
    const JsonGrammar::Node& n = g_->nodes[size_t(s.top.node)];
    if (s.top.kind == kNumber && number_can_end(s.top.sub) && number_in_bounds(n, s.top)) return true;
    if (s.top.kind == kLiteral && n.literals[size_t(s.top.lo)].size() == size_t(s.top.pos)) return true;
  }
  return false;
}

// The closing text of one position: each open frame, innermost first, is finished with the
// fewest bytes (required keys, minItems and minLength filled with the grammar's minimal values).
std::string JsonMatcher::complete_state(const State& start) const {
  State s = start;
  std::string out;
  const auto& minimal = g_->minimal;
  for (int guard = 0; guard < 4 * kMaxDepth + 8; ++guard) {
    Frame& f = s.top;
    const JsonGrammar::Node& n = g_->nodes[size_t(f.node)];
    switch (f.kind) {
      case kDone:
        return out;
      case kValue:
        out += minimal[size_t(f.node)];
        break;
      case kString:
        if (n.pattern >= 0) {
          out += g_->patterns[size_t(n.pattern)].shortest[size_t(f.dfa)];  // finishes a character too
        } else {
          out += string_finish(f.sub);
          if (f.count < n.min_length) out += std::string(size_t(n.min_length - f.count), 'a');
        }
        out += '"';
        break;
      case kNumber:
        out += number_finish(n, f);
        break;
      case kLiteral:
        out += n.literals[size_t(f.lo)].substr(size_t(f.pos));
        break;
      case kObject: {
        if (f.phase >= kDsOpen) {
          out += complete_dsml(f);
          break;
        }
        int32_t prop = -2;  // -2: no pending key
        if (f.phase == kObjKey) {
          out += finish_key(n, f, true, &prop);
          out += '"';
        } else if (f.phase == kObjColon) {
          prop = f.count;
        } else if (f.phase == kObjKeyNext) {
          const std::vector<int32_t> left = required_left(n, f.seen);
          prop = left.empty() ? first_open(n, f.seen, 0, int32_t(n.keys.size())) : left[0];
          out += '"';
          out += prop >= 0 ? n.keys[size_t(prop)] : std::string();
          out += '"';
        }
        bool first = f.phase == kObjStart;
        if (prop != -2) {
          out += ':';
          out += minimal[size_t(prop >= 0 ? n.key_nodes[size_t(prop)] : n.additional)];
          if (prop >= 0) f.seen |= uint64_t(1) << prop;
          first = false;
        }
        for (int32_t i : required_left(n, f.seen)) {
          if (!first) out += ',';
          first = false;
          out += '"' + n.keys[size_t(i)] + "\":" + minimal[size_t(n.key_nodes[size_t(i)])];
        }
        out += '}';
        break;
      }
      case kArray: {
        int32_t count = f.count;
        bool first = f.phase == kArrStart;
        if (f.phase == kArrNeed) {
          out += minimal[size_t(item_node(n, count++))];
          first = false;
        }
        for (; count < n.min_items; ++count) {
          if (!first) out += ',';
          first = false;
          out += minimal[size_t(item_node(n, count))];
        }
        out += ']';
        break;
      }
    }
    pop_into(s);
  }
  fail("JSON grammar: no completion found");
}

std::string JsonMatcher::completion() const { return completion_of(states_); }

std::string JsonMatcher::completion_of(const std::vector<State>& states) const {
  if (complete_of(states)) return "";
  std::string best;
  bool found = false;
  for (const State& s : states) {
    std::string c = complete_state(s);
    if (!found || c.size() < best.size()) best = std::move(c), found = true;
  }
  return best;
}

std::optional<std::string> JsonMatcher::completion_after(std::string_view bytes) const {
  if (bytes.empty()) return std::nullopt;
  const size_t mark = arena_.size();
  std::vector<State> a = states_, b;
  for (unsigned char c : bytes) {
    if (!step_all(a, c, b)) {
      arena_.resize(mark);
      return std::nullopt;
    }
    std::swap(a, b);
  }
  std::string out = completion_of(a);
  arena_.resize(mark);
  return out;
}

void JsonMatcher::allowed_tokens(const TokenTrie& trie, std::vector<uint8_t>& allowed) const {
  const size_t mark = arena_.size();
  // Inside a string without a pattern, a token of plain characters is allowed whenever the
  // length bound leaves room for it: no need to step its bytes.
  int64_t room = -1;
  for (const State& s : states_) {
    const JsonGrammar::Node& n = g_->nodes[size_t(s.top.node)];
    if (s.top.kind != kString || s.top.sub != kStrNormal || n.pattern >= 0) {
      room = -1;
      break;
    }
    const int64_t r = n.max_length - s.top.count;
    room = room < 0 ? r : std::min(room, r);
  }
  thread_local std::vector<std::vector<State>> levels;
  if (levels.empty()) levels.resize(1);
  levels[0] = states_;
  size_t valid = 0;         // levels[0..valid] hold the positions after the last stepped entry's first bytes
  size_t dead = SIZE_MAX;   // that entry was refused at this byte
  size_t run = 0;           // bytes the current entry shares with the last stepped one
  for (size_t i = 0; i < trie.size(); ++i) {
    run = i == 0 ? 0 : std::min<size_t>(run, trie.common(i));
    const std::string_view b = trie.bytes(i);
    uint8_t& a = allowed[size_t(trie.id(i))];
    if (room >= 0 && trie.plain(i) && int64_t(trie.code_points(i)) <= room) {
      a = 1;
      continue;
    }
    if (dead != SIZE_MAX && run > dead) {  // shares the refused prefix
      a = 0;
      continue;
    }
    size_t d = std::min(valid, run);
    if (levels.size() < b.size() + 1) levels.resize(b.size() + 1);
    dead = SIZE_MAX;
    for (; d < b.size(); ++d)
      if (!step_all(levels[d], static_cast<unsigned char>(b[d]), levels[d + 1])) {
        dead = d;
        break;
      }
    valid = dead == SIZE_MAX ? b.size() : dead;
    a = dead == SIZE_MAX;
    run = SIZE_MAX;
  }
  arena_.resize(mark);
}

// --- the token list ------------------------------------------------------------------------

TokenTrie::TokenTrie(const Tokenizer& tok) {
  std::vector<std::pair<std::string, int32_t>> entries;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (!tok.is_valid_id(id) || tok.is_special(id)) continue;
    std::string b = tok.token_bytes(id);
    if (!b.empty()) entries.emplace_back(std::move(b), id);
  }
  std::sort(entries.begin(), entries.end());
  offset_.push_back(0);
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& b = entries[i].first;
    ids_.push_back(entries[i].second);
    text_ += b;
    offset_.push_back(uint32_t(text_.size()));
    size_t l = 0;
    if (i > 0) {
      const std::string& p = entries[i - 1].first;
      while (l < p.size() && l < b.size() && p[l] == b[l] && l < 0xFFFF) ++l;
    }
    lcp_.push_back(uint16_t(l));
    // Plain: whole UTF-8 characters, none of them a quote, backslash or control character.
    uint8_t sub = kStrNormal;
    uint32_t cps = 0;
    bool plain = true;
    for (unsigned char c : b) {
      const uint8_t before = sub;
      const int r = string_byte(sub, c);
      if (r == kReject || r == kClose || c == '\\') {
        plain = false;
        break;
      }
      cps += before == kStrNormal;
    }
    plain_.push_back(plain && sub == kStrNormal);
    cps_.push_back(cps);
  }
}

}  // namespace whale
