// UTF-8 helpers for the tokenizer and streaming output.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace whale::utf8 {

// Length of the complete, valid UTF-8 sequence starting at s[0], or 0 if s does not start
// with one (invalid lead byte, bad continuation, overlong, surrogate, > U+10FFFF).
// Returns -1 if s is a valid but incomplete prefix (more bytes needed).
int sequence_length(std::string_view s);

bool is_valid(std::string_view s);

// Appends the UTF-8 encoding of a code point.
void append(std::string& out, uint32_t cp);

// Replaces every invalid byte sequence by U+FFFD (as Python's errors="replace").
std::string sanitize(std::string_view s);

}  // namespace whale::utf8
