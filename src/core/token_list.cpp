#include "core/token_list.h"

#include <cctype>
#include <cstdint>

#include "core/error.h"

namespace whale {

std::vector<int32_t> parse_token_list(const std::string& text, const char* flag) {
  std::vector<int32_t> ids;
  size_t i = 0;
  if (text.empty()) fail(flag, ": expected a comma-separated list of token ids, got nothing");
  while (i <= text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    std::string item = text.substr(i, j - i);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.pop_back();
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.erase(0, 1);
    if (item.empty()) fail(flag, ": empty entry in token list \"", text, "\"");
    int64_t v = 0;
    for (char ch : item) {
      if (!std::isdigit(static_cast<unsigned char>(ch))) fail(flag, ": \"", item, "\" is not a token id (non-negative integer)");
      v = v * 10 + (ch - '0');
      if (v > INT32_MAX) fail(flag, ": token id \"", item, "\" is too large");
    }
    ids.push_back(int32_t(v));
    i = j + 1;
  }
  return ids;
}

void check_token_range(const std::vector<int32_t>& ids, int64_t vocab, const char* flag) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= vocab) fail(flag, ": token id ", ids[i], " (position ", i, ") is out of range: vocab_size is ", vocab);
}

}  // namespace whale
