// Constrains generated text to one JSON object (OpenAI response_format json_object,
// Ollama format "json"): a byte-level pushdown automaton that says whether a token's bytes
// can continue a valid JSON text. The engine samples, and rejects (masks and redraws)
// tokens the automaton refuses, so the text is valid JSON when the model stops, and the
// model may only stop once the object is complete.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace whale {

class JsonConstraint {
 public:
  // Whitespace between tokens is bounded (a newline and indentation: a run of at most this
  // many bytes), so a model cannot fill max_tokens with blank lines.
  static constexpr uint8_t kMaxWhitespace = 24;
  // Whether appending `bytes` keeps the text a prefix of a valid JSON object (at most a few
  // whitespace bytes after it).
  bool accepts(std::string_view bytes) const;
  void push(std::string_view bytes);  // commits bytes that accepts() allowed
  bool complete() const { return state_.done; }
  // The shortest text that completes the object from here ("" once complete): closes the open
  // string, number or literal, gives a waiting key or value `null` ("":null after a comma),
  // and closes every open bracket. The engine forces it when max_tokens would otherwise cut
  // the object short.
  std::string completion() const;

 private:
  enum class Lex : uint8_t {
    Value,        // expecting a value (or, in an array just opened, ']')
    ObjectStart,  // after '{': a key or '}'
    Key,          // after ',' in an object: a key
    Colon,        // after a key
    After,        // after a value: ',' or the closing bracket
    String,       // inside a string; `key` says whether it is a key
    Escape,       // after a backslash
    Unicode,      // \uXXXX: `count` hex digits left
    Number,       // inside a number; `num` is the sub-state
    Literal,      // true / false / null: `lit` points at the rest
  };
  struct State {
    std::vector<char> stack;  // '{' or '[' of the open containers
    Lex lex = Lex::Value;
    bool key = false, done = false;
    uint8_t count = 0, num = 0;
    const char* lit = nullptr;
    uint8_t trailing = 0;  // whitespace after the finished object
    uint8_t ws = 0;        // whitespace bytes in a row between tokens (bounded: kMaxWhitespace)
  };
  static bool step(State& s, unsigned char c);
  static bool end_value(State& s);
  State state_;
};

}  // namespace whale
