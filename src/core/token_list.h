// Parsing of token-id lists given on the command line ("5,17,42").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace whale {

// Rejects empty items, signs, junk and values above INT32_MAX; errors name `flag`.
std::vector<int32_t> parse_token_list(const std::string& text, const char* flag);
// Rejects ids >= vocab, naming the position.
void check_token_range(const std::vector<int32_t>& ids, int64_t vocab, const char* flag);

}  // namespace whale
