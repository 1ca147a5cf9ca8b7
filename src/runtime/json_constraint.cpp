#include "runtime/json_constraint.h"

#include <cstring>

namespace whale {

namespace {
constexpr uint8_t kMaxTrailing = 2;  // whitespace allowed after the object (then only the end)
bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Number sub-states: 0 after '-', 1 after a leading 0, 2 in integer digits, 3 after '.',
// 4 in fraction digits, 5 after 'e', 6 after the exponent sign, 7 in exponent digits.
bool number_can_end(uint8_t n) { return n == 1 || n == 2 || n == 4 || n == 7; }
}  // namespace

// A value just ended: the container it was in decides what comes next.
bool JsonConstraint::end_value(State& s) {
  if (s.stack.empty()) {
    s.done = true;
    s.lex = Lex::After;
  } else {
    s.lex = Lex::After;
  }
  return true;
}

bool JsonConstraint::step(State& s, unsigned char c) {
  if (s.done) return is_ws(c) && ++s.trailing <= kMaxTrailing;
  const bool in_string = s.lex == Lex::String || s.lex == Lex::Escape || s.lex == Lex::Unicode;
  if (!in_string) {
    if (is_ws(c) && s.lex != Lex::Number && s.lex != Lex::Literal && ++s.ws > kMaxWhitespace) return false;
    if (!is_ws(c)) s.ws = 0;
  }
  switch (s.lex) {
    case Lex::Value:
    case Lex::ObjectStart:
    case Lex::Key:
      if (s.stack.empty()) {  // the text starts with the object itself
        if (c != '{') return false;
        s.stack.push_back('{');
        s.lex = Lex::ObjectStart;
        return true;
      }
      if (is_ws(c)) return true;
      if (s.lex == Lex::ObjectStart || s.lex == Lex::Key) {
        if (c == '"') {
          s.lex = Lex::String;
          s.key = true;
          return true;
        }
        if (c == '}' && s.lex == Lex::ObjectStart) {
          s.stack.pop_back();
          return end_value(s);
        }
        return false;
      }
      if (c == '{' || c == '[') {
        if (s.stack.size() >= 64) return false;
        s.stack.push_back(char(c));
        s.lex = c == '{' ? Lex::ObjectStart : Lex::Value;
        s.count = c == '[';  // an array may close right away
        return true;
      }
      if (c == ']' && !s.stack.empty() && s.stack.back() == '[' && s.count == 1) {
        s.stack.pop_back();
        return end_value(s);
      }
      s.count = 0;
      if (c == '"') {
        s.lex = Lex::String;
        s.key = false;
        return true;
      }
      if (c == '-' || is_digit(c)) {
        s.lex = Lex::Number;
        s.num = c == '-' ? 0 : c == '0' ? 1 : 2;
        return true;
      }
      if (c == 't' || c == 'f' || c == 'n') {
        s.lex = Lex::Literal;
        s.lit = c == 't' ? "rue" : c == 'f' ? "alse" : "ull";
        return true;
      }
      return false;
    case Lex::Colon:
      if (is_ws(c)) return true;
      if (c != ':') return false;
      s.lex = Lex::Value;
      s.count = 0;
      return true;
    case Lex::After:
      if (is_ws(c)) return true;
      if (c == ',') {
        s.lex = s.stack.back() == '{' ? Lex::Key : Lex::Value;
        s.count = 0;
        return true;
      }
      if ((c == '}' && s.stack.back() == '{') || (c == ']' && s.stack.back() == '[')) {
        s.stack.pop_back();
        return end_value(s);
      }
      return false;
    case Lex::String:
      if (c == '"') {
        if (s.key) {
          s.lex = Lex::Colon;
          return true;
        }
        return end_value(s);
      }
      if (c == '\\') {
        s.lex = Lex::Escape;
        return true;
      }
      return c >= 0x20;  // control characters must be escaped
    case Lex::Escape:
      if (c == 'u') {
        s.lex = Lex::Unicode;
        s.count = 4;
        return true;
      }
      if (!std::strchr("\"\\/bfnrt", c) || c == 0) return false;
      s.lex = Lex::String;
      return true;
    case Lex::Unicode:
      if (!is_hex(c)) return false;
      if (--s.count == 0) s.lex = Lex::String;
      return true;
    case Lex::Number:
      switch (s.num) {
        case 0:
          if (!is_digit(c)) return false;
          s.num = c == '0' ? 1 : 2;
          return true;
        case 1:
        case 2:
          if (s.num == 2 && is_digit(c)) return true;
          if (c == '.') return s.num = 3, true;
          if (c == 'e' || c == 'E') return s.num = 5, true;
          break;
        case 3:
          if (!is_digit(c)) return false;
          return s.num = 4, true;
        case 4:
          if (is_digit(c)) return true;
          if (c == 'e' || c == 'E') return s.num = 5, true;
          break;
        case 5:
          if (c == '+' || c == '-') return s.num = 6, true;
          if (!is_digit(c)) return false;
          return s.num = 7, true;
        case 6:
          if (!is_digit(c)) return false;
          return s.num = 7, true;
        case 7:
          if (is_digit(c)) return true;
          break;
      }
      if (!number_can_end(s.num)) return false;
      end_value(s);
      return step(s, c);  // the byte after the number belongs to what follows it
    case Lex::Literal:
      if (c != static_cast<unsigned char>(*s.lit)) return false;
      if (*++s.lit == 0) return end_value(s);
      return true;
  }
  return false;
}

bool JsonConstraint::accepts(std::string_view bytes) const {
  if (bytes.empty()) return false;
  State s = state_;
  for (unsigned char c : bytes)
    if (!step(s, c)) return false;
  return true;
}

void JsonConstraint::push(std::string_view bytes) {
  for (unsigned char c : bytes) step(state_, c);
}

std::string JsonConstraint::completion() const {
  State s = state_;
  std::string out;
  auto put = [&](char c) {
    step(s, static_cast<unsigned char>(c));
    out += c;
  };
  for (int guard = 0; !s.done && guard < 4096; ++guard) {
    switch (s.lex) {
      case Lex::Escape: put('n'); break;
      case Lex::Unicode: put('0'); break;
      case Lex::String: put('"'); break;
      case Lex::Colon: put(':'); break;
      case Lex::Number:
        if (number_can_end(s.num)) end_value(s);  // a complete number: what follows it decides
        else put('0');
        break;
      case Lex::Literal: put(*s.lit); break;
      case Lex::ObjectStart: put('}'); break;
      case Lex::Key:
        for (char c : std::string("\"\":null")) put(c);
        break;
      case Lex::Value:
        if (s.stack.empty()) put('{');
        else if (s.stack.back() == '[' && s.count == 1) put(']');
        else for (char c : std::string("null")) put(c);
        break;
      case Lex::After: put(s.stack.back() == '{' ? '}' : ']'); break;
    }
  }
  return out;
}

}  // namespace whale
