#include "tokenizer/utf8.h"

namespace whale::utf8 {

int sequence_length(std::string_view s) {
  if (s.empty()) return -1;
  const auto b0 = static_cast<unsigned char>(s[0]);
  int n;
  uint32_t min;
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) n = 2, min = 0x80;
  else if (b0 >= 0xe0 && b0 <= 0xef) n = 3, min = 0x800;
  else if (b0 >= 0xf0 && b0 <= 0xf4) n = 4, min = 0x10000;
  else return 0;
  uint32_t cp = b0 & (0x7f >> n);
  for (int i = 1; i < n; ++i) {
    if (size_t(i) >= s.size()) {
      // Incomplete: valid so far? Check the early constraints on the second byte.
      return -1;
    }
    const auto b = static_cast<unsigned char>(s[size_t(i)]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
    if (i == 1) {  // reject overlongs, surrogates and > U+10FFFF as early as the 2nd byte
      if (n == 3 && b0 == 0xe0 && b < 0xa0) return 0;
      if (n == 3 && b0 == 0xed && b >= 0xa0) return 0;
      if (n == 4 && b0 == 0xf0 && b < 0x90) return 0;
      if (n == 4 && b0 == 0xf4 && b >= 0x90) return 0;
    }
  }
  if (cp < min) return 0;
  return n;
}

bool is_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    int n = sequence_length(s.substr(i));
    if (n <= 0) return false;
    i += size_t(n);
  }
  return true;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    int n = sequence_length(s.substr(i));
    if (n > 0) {
      out.append(s.substr(i, size_t(n)));
      i += size_t(n);
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD for one invalid byte (or a truncated tail)
      ++i;
      // A truncated multi-byte tail at the very end counts as one replacement, like Python.
      if (n < 0) {
        while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80) ++i;
      }
    }
  }
  return out;
}

}  // namespace whale::utf8
