// libFuzzer target: JSON Schema compilation and the grammar matcher. Input: flags byte, a schema
// (JSON text), a NUL, then bytes offered to the matcher. Refused schemas must be a clean Error;
// the matcher must never crash, and wherever it stands its completion must be accepted and end
// in a whole value (in JSON and in DSML syntax).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "runtime/json_grammar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const char* begin = reinterpret_cast<const char*>(data + 1);
  const size_t rest = size - 1;
  const void* nul = std::memchr(begin, 0, rest);
  const size_t schema_len = nul ? size_t(static_cast<const char*>(nul) - begin) : rest;
  const std::string schema_text(begin, schema_len);
  const std::string text = nul ? std::string(begin + schema_len + 1, rest - schema_len - 1) : std::string();
  std::shared_ptr<const whale::JsonGrammar> g;
  if (flags & 1) {
    g = whale::JsonGrammar::any_object();
  } else {
    const auto schema = nlohmann::ordered_json::parse(schema_text, nullptr, false);
    if (schema.is_discarded()) return 0;
    try {
      g = whale::JsonGrammar::compile(schema);
    } catch (const whale::Error&) {
      return 0;
    }
  }
  const auto syntax = (flags & 2) ? whale::JsonMatcher::Syntax::Dsml : whale::JsonMatcher::Syntax::Json;
  whale::JsonMatcher m(g, syntax);
  std::string written;
  const size_t step = 1 + (flags >> 4);
  for (size_t i = 0; i < text.size(); i += step) {
    const std::string piece = text.substr(i, step);
    if (!m.accepts(piece)) continue;
    m.push(piece);
    written += piece;
  }
  const std::string done = written + m.completion();
  auto broken = [&](const char* what) {
    std::fprintf(stderr, "%s: %s\n", what, done.c_str());
    __builtin_trap();
  };
  whale::JsonMatcher check(g, syntax);
  if (!check.accepts(done) && !done.empty()) broken("completion refused");
  check.push(done);
  if (!check.complete()) broken("completion not whole");
  if (syntax == whale::JsonMatcher::Syntax::Json && !nlohmann::json::accept(done)) broken("not JSON");
  return 0;
}
