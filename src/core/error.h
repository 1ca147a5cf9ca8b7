// Errors. Every failure a user can cause (bad files, bad flags, bad requests) is a whale::Error
// whose message names the culprit: the file, the tensor, the field or the flag.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace whale {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(str_cat(args...));
}

}  // namespace whale

// Checks a condition a user can violate; throws whale::Error with the concatenated message.
#define WHALE_CHECK(cond, ...)                      \
  do {                                              \
    if (!(cond)) ::whale::fail(__VA_ARGS__);        \
  } while (0)
