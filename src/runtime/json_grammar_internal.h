// Pieces the schema compiler and the matcher share (not part of the runtime's interface).
#pragma once
#include <cstdint>
#include <string>
#include <tuple>

#include "runtime/json_grammar.h"

namespace whale::json_grammar {

// Frame kinds and phases.
enum : uint8_t { kValue, kObject, kArray, kString, kNumber, kLiteral, kDone };
enum : uint8_t { kObjStart, kObjKeyNext, kObjKey, kObjColon, kObjAfter };  // after '{', after ',', in a key, after it, after a value
// An object written as DSML parameters (V3.2/V4 tool calls): before a tag (a parameter's or the
// invoke's close), in the name, in the string="..." attribute, in a raw string value, in the
// parameter's closing tag, after a JSON value.
enum : uint8_t { kDsOpen = 8, kDsKey, kDsAttr, kDsRaw, kDsClose, kDsAfterValue };
enum : uint8_t { kArrStart, kArrNeed, kArrAfter };                          // after '[', after ',', after an item
enum : uint8_t { kNegative = 1, kOtherKey = 2 };                            // Frame::flags
constexpr uint8_t kMaxTrailing = 2;      // whitespace after the whole value
constexpr uint8_t kOneSpace = 0xFF;      // State::ws: the run is a single space
constexpr int kMaxBoundedDigits = 17;    // digits of a number with bounds (before and after the point)
constexpr int kMaxDigits = 64;           // of any number: every number stays a finite double

// String lexing: sub-states of a string being written.
enum : uint8_t {
  kStrNormal = 0, kStrEscape, kStrHex4, kStrHex3, kStrHex2, kStrHex1,
  // UTF-8: continuation bytes still expected, with the range of the next one
  kU1, kU2, kUE0, kUED, kU3, kUF0, kUF4,
  // \uD...: a surrogate must come as a pair (\uD800-\uDBFF then \uDC00-\uDFFF), as strict
  // parsers demand: after the D, the rest of a high one, its low partner's \, u, D and C-F.
  kStrHexD, kStrHiHex2, kStrHiHex1, kStrLoSlash, kStrLoU, kStrLoD, kStrLoC,
};
// What a byte did: refused, began a code point (more bytes follow), began and ended one, was
// inside one, ended one, or closed the string.
enum { kReject = -1, kStart, kStartEnd, kInside, kEnd, kClose };
int string_byte(uint8_t& sub, unsigned char c);
std::string string_finish(uint8_t sub);  // the bytes that finish a partial code point
// The next continuation byte's range and the sub-state after it.
inline std::tuple<unsigned char, unsigned char, uint8_t> utf8_next(uint8_t sub) {
  switch (sub) {
    case kU1: return {0x80, 0xBF, kStrNormal};
    case kU2: return {0x80, 0xBF, kU1};
    case kUE0: return {0xA0, 0xBF, kU1};
    case kUED: return {0x80, 0x9F, kU1};
    case kU3: return {0x80, 0xBF, kU2};
    case kUF0: return {0x90, 0xBF, kU2};
    case kUF4: return {0x80, 0x8F, kU2};
    default: return {1, 0, kStrNormal};
  }
}

// Numbers (Frame::sub: see json_grammar.cpp).
bool number_can_end(uint8_t sub);
bool number_step(const JsonGrammar::Node& n, JsonMatcher::Frame& f, unsigned char c);
bool number_in_bounds(const JsonGrammar::Node& n, const JsonMatcher::Frame& f);
std::string number_finish(const JsonGrammar::Node& n, JsonMatcher::Frame f);  // throws when none fits

}  // namespace whale::json_grammar
