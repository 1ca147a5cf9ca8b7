// Constrained decoding for JSON: a JSON Schema compiled into a grammar (JsonGrammar), a
// byte-level pushdown matcher that follows one output through it (JsonMatcher), and a sorted
// token list (TokenTrie) that lets the matcher mask a whole vocabulary row quickly.
//
// Used by response_format json_object / json_schema, Ollama's `format`, and the arguments of
// forced tool calls. The engine samples and checks the drawn token first (cheap, and the
// model's own choice usually fits); only when that fails does it mask the row.
//
// Supported schema keywords: type (one or a list), properties, required,
// additionalProperties (bool or schema), items, prefixItems, minItems, maxItems, enum, const,
// anyOf, oneOf (as anyOf), allOf with one member, $ref to #/$defs/… or #/definitions/… or "#"
// (recursion included), minLength, maxLength, pattern (a regular-expression subset: literals,
// classes, ., groups, |, ?, *, +, {m,n}, ^ and $ at the ends), format (date, time,
// date-time, uuid, ipv4, email as patterns), minimum, maximum, exclusiveMinimum,
// exclusiveMaximum (integers and numbers), nullable. Annotations (title, description,
// default, examples, $schema, $id, $comment, …) are ignored. Anything else (not, if/then/
// else, patternProperties, dependentRequired, multipleOf, uniqueItems, contains,
// propertyNames, …) is refused with an error naming the keyword and where it is, rather
// than silently not enforced.
//
// What the matcher guarantees: every prefix it accepts can be completed to a value that
// validates (completion() writes the shortest such text), whitespace between tokens is
// bounded (one space, or a newline and indentation), no declared property is written twice
// (other keys are not tracked), numbers stay finite doubles (at most 64 digits before and
// after the point, exponents of at most two), and strings are valid UTF-8 without raw control
// characters. Properties come in the order the schema lists them (as OpenAI's Structured
// Outputs and llama.cpp write them, so a "reasoning" property listed first is written first);
// optional ones may be left out, required ones may not be skipped; keys that are not declared
// (additionalProperties) may come anywhere. Strings with a pattern may not use backslash
// escapes (the pattern is matched on the bytes written).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace whale {

class Tokenizer;

class JsonGrammar {
 public:
  // Throws Error naming the keyword and its path in the schema for what is not supported,
  // and for schemas no value can satisfy.
  // (Ordered: properties are written in the order the schema lists them.)
  static std::shared_ptr<const JsonGrammar> compile(const nlohmann::ordered_json& schema);
  // Any JSON object (JSON mode: response_format json_object, Ollama format "json").
  static std::shared_ptr<const JsonGrammar> any_object();

  enum class Kind : uint8_t { Any, Object, Array, String, Number, Integer, Literal, AnyOf };
  struct Node {
    Kind kind = Kind::Any;
    // Object: property names as they are written between the quotes (JSON-escaped), sorted
    // bytewise; the value node of each; which are required; the node of other keys' values.
    std::vector<std::string> keys;
    std::vector<int32_t> key_nodes;
    std::vector<int32_t> order;  // keys[i]'s position in the schema: keys are written in that order
    uint64_t required = 0;
    int32_t additional = -1;  // -1: no other keys
    // Array: items (after prefix_items), their count's bounds.
    std::vector<int32_t> prefix_items;
    int32_t items = -1;  // -1: nothing beyond prefix_items
    int64_t min_items = 0, max_items = INT32_MAX;
    // String: length in code points; a pattern (index into patterns).
    int64_t min_length = 0, max_length = INT32_MAX;
    int32_t pattern = -1;
    // Number / Integer bounds (inclusive unless the flag says exclusive).
    double minimum = -1e308, maximum = 1e308;
    bool exclusive_min = false, exclusive_max = false;
    bool bounded = false;  // any bound is set
    // Literal: the JSON texts allowed (enum/const, booleans, null), sorted bytewise.
    std::vector<std::string> literals;
    // AnyOf: the alternatives (never AnyOf themselves).
    std::vector<int32_t> options;
  };
  // A deterministic automaton over bytes for a string pattern. next[state * 256 + byte]:
  // the next state, -1 for none. Every state can reach an accepting one.
  struct Dfa {
    std::vector<int32_t> next;
    std::vector<uint8_t> accepting;
    std::vector<std::string> shortest;  // per state: the shortest text reaching acceptance
  };

  std::vector<Node> nodes;
  std::vector<Dfa> patterns;
  int32_t root = 0;
  std::vector<std::string> minimal;  // per node: the shortest JSON text that validates

  // Fixed nodes every grammar has.
  static constexpr int32_t kAny = 0, kAnyObject = 1, kAnyArray = 2, kAnyString = 3, kAnyNumber = 4,
                           kAnyLiteral = 5;
};

// Every token's bytes, sorted, with the length each shares with the one before: walking the
// list in order visits the vocabulary as a trie would, so a matcher steps each shared prefix
// once and skips every token below a prefix it refused. Built once per vocabulary.
class TokenTrie {
 public:
  explicit TokenTrie(const Tokenizer& tokenizer);
  size_t size() const { return ids_.size(); }
  int32_t id(size_t i) const { return ids_[i]; }
  std::string_view bytes(size_t i) const { return {text_.data() + offset_[i], size_t(offset_[i + 1] - offset_[i])}; }
  uint16_t common(size_t i) const { return lcp_[i]; }      // bytes shared with entry i - 1
  bool plain(size_t i) const { return plain_[i] != 0; }    // string content needing no escape
  uint32_t code_points(size_t i) const { return cps_[i]; }  // of a plain entry

 private:
  std::vector<int32_t> ids_;
  std::vector<uint32_t> offset_;
  std::string text_;
  std::vector<uint16_t> lcp_;
  std::vector<uint8_t> plain_;
  std::vector<uint32_t> cps_;
};

// Follows one output through a grammar, byte by byte. Copyable (a copy is an independent
// matcher).
class JsonMatcher {
 public:
  // Whitespace outside strings: a run is one space, or a newline and indentation (spaces or
  // tabs), at most this many bytes.
  static constexpr uint8_t kMaxWhitespace = 21;
  static constexpr int kMaxDepth = 64;           // nesting of objects and arrays

  // Json: one JSON value. Dsml: the root object written as DeepSeek's DSML parameters, from
  // after `<｜DSML｜invoke name="NAME">\n` up to and including `</｜DSML｜invoke>` (a
  // `<｜DSML｜parameter name="KEY" string="true|false">VALUE</｜DSML｜parameter>` line per key:
  // string="true" for raw text, "false" for JSON).
  enum class Syntax { Json, Dsml };
  explicit JsonMatcher(std::shared_ptr<const JsonGrammar> grammar, Syntax syntax = Syntax::Json);

  // Whether appending `bytes` keeps the text a prefix of a value the grammar allows.
  bool accepts(std::string_view bytes) const;
  void push(std::string_view bytes);  // commits bytes that accepts() allowed
  bool complete() const;              // the text so far is a whole value (the output may end)
  // The shortest text that completes the value from here ("" once complete). The engine
  // forces it when max_tokens would otherwise cut the value short.
  std::string completion() const;
  // accepts(bytes), and then the completion of the text with `bytes` appended (one pass); nullopt
  // when `bytes` is refused.
  std::optional<std::string> completion_after(std::string_view bytes) const;
  // allowed[trie.id(i)] = 1 for every token that accepts() would allow, 0 otherwise (ids not in
  // the trie are left as they are).
  void allowed_tokens(const TokenTrie& trie, std::vector<uint8_t>& allowed) const;

  // One parse position: the innermost open value (`top`) and the rest of the stack (an index
  // into the arena of frames, shared between positions).
  struct Frame {
    int32_t node = 0;
    uint8_t kind = 0, phase = 0, sub = 0, flags = 0;
    int32_t lo = 0, hi = 0, pos = 0;  // key or literal candidates [lo, hi), bytes matched
    int32_t count = 0;                // string code points, array items, key index
    int32_t dfa = 0;                  // pattern state
    double value = 0;                 // number magnitude so far
    uint64_t seen = 0;                // object: properties written
    bool operator==(const Frame& o) const;
  };
  struct State {
    Frame top;
    int32_t rest = -1;  // arena index of the enclosing frame; -1: the top is the root
    uint16_t depth = 0;
    uint8_t ws = 0;
    bool operator==(const State& o) const { return rest == o.rest && depth == o.depth && ws == o.ws && top == o.top; }
  };
  struct Link {
    Frame frame;
    int32_t rest;
  };

 private:
  // Appends to `out` the positions `s` becomes after byte c (none: c is refused).
  void step(const State& s, unsigned char c, std::vector<State>& out) const;
  void start_value(int32_t node, unsigned char c, const State& s, std::vector<State>& out) const;
  void end_value(State s, unsigned char* reprocess, std::vector<State>& out) const;
  void pop_into(State& s) const;
  int32_t push_frame(const Frame& f, int32_t rest) const;
  bool step_all(const std::vector<State>& in, unsigned char c, std::vector<State>& out) const;
  std::string complete_state(const State& s) const;
  bool complete_of(const std::vector<State>& states) const;
  std::string completion_of(const std::vector<State>& states) const;
  void step_dsml(const State& s, unsigned char c, std::vector<State>& out) const;
  std::string complete_dsml(Frame& f) const;  // finishes a DSML frame (f.seen updated)
  std::string dsml_parameter(const JsonGrammar::Node& n, int32_t prop) const;  // a whole minimal parameter
  std::string dsml_value(int32_t child, int attr) const;

  std::shared_ptr<const JsonGrammar> g_;
  std::vector<State> states_;          // the positions the text so far may be at (several under anyOf)
  mutable std::vector<Link> arena_;    // frames below the tops; grows on push, trimmed after a mask
};

}  // namespace whale
