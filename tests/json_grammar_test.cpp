// The JSON grammar: schema compilation, the byte matcher, completions, and the token mask
// (checked against stepping each token on its own).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <random>

#include "core/error.h"
#include "runtime/json_grammar.h"
#include "test_util.h"
#include "tokenizer/output_parser.h"
#include "tokenizer/tokenizer.h"

namespace whale {
namespace {

using ojson = nlohmann::ordered_json;

std::shared_ptr<const JsonGrammar> schema(const char* text) { return JsonGrammar::compile(ojson::parse(text)); }

bool accepts_whole(const std::shared_ptr<const JsonGrammar>& g, const std::string& text) {
  JsonMatcher m(g);
  if (!m.accepts(text)) return false;
  m.push(text);
  return m.complete();
}

TEST(JsonGrammar, AnyObjectAcceptsJsonObjectsAndNothingElse) {
  const auto g = JsonGrammar::any_object();
  for (const char* ok : {"{}", "{\"a\": 1}", "{\"a\":[1,2.5,-3e+2,true,false,null,\"x\\u00e9\\n\"],\"b\":{\"c\":{}}}",
                         "{ \"k\" : [ ] } ", "{\"s\":\"caf\xc3\xa9\"}", "{\"e\":\"\\ud83d\\ude00\\u00e9\"}"})
    EXPECT_TRUE(accepts_whole(g, ok)) << ok;
  for (const char* bad : {"[1]", "1", " {}", "\"a\"", "{a:1}", "{\"a\" 1}", "{\"a\":01}", "{\"a\":1,}", "{\"a\":tru}x",
                          "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{}}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":[1 2]}",
                          "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":1e400}", "{\"a\":\"\\udc00\"}",
                          "{\"a\":\"\\ud83d\"}", "{\"a\":\"\\ud83dx\"}"}) {
    JsonMatcher m(g);
    EXPECT_FALSE(m.accepts(bad) && (m.push(bad), m.complete())) << bad;
  }
  JsonMatcher m(g);
  m.push("{\"a\": 12");
  EXPECT_FALSE(m.complete());
  EXPECT_TRUE(m.accepts("3}"));
  EXPECT_FALSE(m.accepts("x"));
  m.push("}");
  EXPECT_TRUE(m.complete());
  EXPECT_TRUE(m.accepts("\n"));
  EXPECT_FALSE(m.accepts("\n\n\n"));  // no endless whitespace after the value
  JsonMatcher w(g);                   // whitespace between tokens is bounded too
  EXPECT_TRUE(w.accepts("{\n" + std::string(JsonMatcher::kMaxWhitespace - 1, ' ') + "\"a\": 1}"));
  EXPECT_FALSE(w.accepts("{" + std::string(JsonMatcher::kMaxWhitespace + 1, '\n')));
  EXPECT_FALSE(w.accepts("{\n" + std::string(JsonMatcher::kMaxWhitespace, ' ')));
  EXPECT_FALSE(w.accepts("{\n\n"));    // one newline per run
  EXPECT_FALSE(w.accepts("{  \"a\""));  // or one space
  EXPECT_FALSE(w.accepts("{\t"));
  EXPECT_TRUE(w.accepts("{\n\t\t\"a\": [\n\t\t\t1,\n\t\t\t2\n\t\t]\n}"));
  EXPECT_TRUE(w.accepts("{\"a\": \"" + std::string(200, ' ') + "\"}"));  // inside strings it is text
  EXPECT_FALSE(w.accepts(std::string(70, '[')));                         // not an object
  EXPECT_FALSE(w.accepts("{\"a\":" + std::string(70, '[')));              // nesting is bounded
}

TEST(JsonGrammar, ObjectsFollowPropertiesRequiredAndAdditional) {
  const auto g = schema(R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
      "tags":{"type":"array","items":{"type":"string"}}},"required":["name","age"],"additionalProperties":false})");
  EXPECT_TRUE(accepts_whole(g, R"({"name":"x","age":3})"));
  EXPECT_TRUE(accepts_whole(g, R"({"name":"x","age":3,"tags":["a","b"]})"));
  EXPECT_FALSE(accepts_whole(g, R"({"age":3,"name":"x"})"));                  // the schema's order
  EXPECT_FALSE(accepts_whole(g, R"({"name":"x"})"));                          // age is required
  EXPECT_FALSE(accepts_whole(g, R"({"name":"x","age":3.5})"));                // an integer
  EXPECT_FALSE(accepts_whole(g, R"({"name":"x","age":3,"other":1})"));        // no other keys
  EXPECT_FALSE(accepts_whole(g, R"({"name":"x","name":"y","age":3})"));       // no duplicates
  EXPECT_FALSE(accepts_whole(g, R"({"name":1,"age":3})"));
  JsonMatcher m(g);
  EXPECT_FALSE(m.accepts("{\"nam\""));  // a key that is no property
  EXPECT_TRUE(m.accepts("{\"na"));
  const auto open = schema(R"({"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"boolean"}})");
  EXPECT_TRUE(accepts_whole(open, R"({"a":1,"b":true,"ab":false})"));
  EXPECT_TRUE(accepts_whole(open, R"({"b":true,"a":1})"));  // other keys anywhere
  EXPECT_FALSE(accepts_whole(open, R"({"a":true})"));
  EXPECT_FALSE(accepts_whole(open, R"({"b":1})"));
  EXPECT_FALSE(accepts_whole(open, R"({"a":1,"a":2})"));
  // additionalProperties defaults to allowed (JSON Schema), with any value
  EXPECT_TRUE(accepts_whole(schema(R"({"type":"object","properties":{"a":{"type":"integer"}}})"), R"({"z":[1,{"q":null}]})"));
}

// Properties in the schema's order: optional ones may be left out, required ones not skipped.
TEST(JsonGrammar, PropertiesComeInTheSchemasOrder) {
  const auto g = schema(R"({"type":"object","properties":{"reasoning":{"type":"string"},"tag":{"type":"string"},
      "answer":{"type":"integer"},"note":{"type":"string"}},"required":["reasoning","answer"],"additionalProperties":false})");
  EXPECT_TRUE(accepts_whole(g, R"({"reasoning":"r","answer":1})"));
  EXPECT_TRUE(accepts_whole(g, R"({"reasoning":"r","tag":"t","answer":1,"note":"n"})"));
  EXPECT_FALSE(accepts_whole(g, R"({"answer":1,"reasoning":"r"})"));
  EXPECT_FALSE(accepts_whole(g, R"({"reasoning":"r","answer":1,"tag":"t"})"));
  EXPECT_FALSE(JsonMatcher(g).accepts(R"({"a)"));  // "answer" before the required "reasoning"
  JsonMatcher m(g);
  m.push(R"({"reasoning":"r","ta)");
  EXPECT_EQ(m.completion(), R"(g":"","answer":0})");
  EXPECT_EQ(JsonMatcher(g).completion(), R"({"reasoning":"","answer":0})");
}

TEST(JsonGrammar, ScalarsEnumsArraysAndAlternatives) {
  EXPECT_TRUE(accepts_whole(schema(R"({"enum":["red","green",3,null]})"), R"("green")"));
  EXPECT_TRUE(accepts_whole(schema(R"({"enum":["red","green",3,null]})"), "3"));
  EXPECT_FALSE(accepts_whole(schema(R"({"enum":["red","green",3,null]})"), R"("blue")"));
  EXPECT_TRUE(accepts_whole(schema(R"({"enum":[1,10,100]})"), "10"));
  EXPECT_TRUE(accepts_whole(schema(R"({"enum":[1,10,100]})"), "1"));
  EXPECT_FALSE(accepts_whole(schema(R"({"enum":[1,10,100]})"), "1000"));
  EXPECT_TRUE(accepts_whole(schema(R"({"const":{"a":[1,2]}})"), R"({"a":[1,2]})"));
  const auto arr = schema(R"({"type":"array","items":{"type":"number"},"minItems":2,"maxItems":3})");
  EXPECT_FALSE(accepts_whole(arr, "[1]"));
  EXPECT_TRUE(accepts_whole(arr, "[1, 2.5]"));
  EXPECT_TRUE(accepts_whole(arr, "[1,2,3]"));
  EXPECT_FALSE(accepts_whole(arr, "[1,2,3,4]"));
  const auto tuple = schema(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})");
  EXPECT_TRUE(accepts_whole(tuple, R"(["a",1])"));
  EXPECT_FALSE(accepts_whole(tuple, R"(["a",1,2])"));
  EXPECT_FALSE(accepts_whole(tuple, R"([1,"a"])"));
  const auto opt = schema(R"({"anyOf":[{"type":"string","maxLength":3},{"type":"null"},
      {"type":"object","properties":{"k":{"type":"boolean"}},"required":["k"],"additionalProperties":false}]})");
  for (const char* ok : {R"("abc")", "null", R"({"k":true})"}) EXPECT_TRUE(accepts_whole(opt, ok)) << ok;
  for (const char* bad : {R"("abcd")", "1", R"({})", R"({"k":1})"}) EXPECT_FALSE(accepts_whole(opt, bad)) << bad;
  const auto types = schema(R"({"type":["integer","null"]})");
  EXPECT_TRUE(accepts_whole(types, "-7"));
  EXPECT_TRUE(accepts_whole(types, "null"));
  EXPECT_FALSE(accepts_whole(types, "1.5"));
  const auto len = schema(R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_FALSE(accepts_whole(len, R"("a")"));
  EXPECT_TRUE(accepts_whole(len, "\"\xc3\xa9\xc3\xa9\""));  // code points, not bytes
  EXPECT_TRUE(accepts_whole(len, R"("a\nb")"));           // an escape is one character
  EXPECT_FALSE(accepts_whole(len, R"("abcd")"));
}

TEST(JsonGrammar, NumberBoundsHoldForEveryPrefix) {
  const auto g = schema(R"({"type":"integer","minimum":18,"maximum":130})");
  EXPECT_TRUE(accepts_whole(g, "18"));
  EXPECT_TRUE(accepts_whole(g, "130"));
  EXPECT_FALSE(accepts_whole(g, "131"));
  EXPECT_FALSE(accepts_whole(g, "17"));
  JsonMatcher m(g);
  EXPECT_FALSE(m.accepts("-"));   // no negative number fits
  EXPECT_FALSE(m.accepts("0"));   // nor one starting with 0
  EXPECT_FALSE(m.accepts("14"));  // 14, 140..149: none fits
  EXPECT_TRUE(m.accepts("13"));   // 130
  EXPECT_FALSE(m.accepts("2000"));
  const auto x = schema(R"({"type":"number","exclusiveMinimum":0,"maximum":1})");
  EXPECT_FALSE(accepts_whole(x, "0"));
  EXPECT_TRUE(accepts_whole(x, "0.25"));
  EXPECT_TRUE(accepts_whole(x, "1"));
  EXPECT_FALSE(accepts_whole(x, "1.5"));
  EXPECT_FALSE(JsonMatcher(x).accepts("1.5"));
  EXPECT_FALSE(JsonMatcher(x).accepts("2"));
  EXPECT_FALSE(JsonMatcher(x).accepts("1e"));  // exponents are refused with bounds
  const auto neg = schema(R"({"type":"integer","maximum":-5})");
  EXPECT_TRUE(accepts_whole(neg, "-5"));
  EXPECT_FALSE(accepts_whole(neg, "-4"));
  EXPECT_EQ(JsonMatcher(neg).completion(), JsonGrammar::compile(ojson::parse(R"({"type":"integer","maximum":-5})"))->minimal[size_t(neg->root)]);
}

TEST(JsonGrammar, PatternsAndFormats) {
  const auto g = schema(R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"})");
  EXPECT_TRUE(accepts_whole(g, R"("AB-123")"));
  EXPECT_FALSE(accepts_whole(g, R"("AB-12")"));
  EXPECT_FALSE(accepts_whole(g, R"("ab-123")"));
  EXPECT_FALSE(JsonMatcher(g).accepts("\"A1"));
  const auto search = schema(R"({"type":"string","pattern":"cat|dog"})");  // not anchored: searched for
  EXPECT_TRUE(accepts_whole(search, R"("hotdogs")"));
  EXPECT_FALSE(accepts_whole(search, R"("cow")"));
  const auto date = schema(R"({"type":"string","format":"date"})");
  EXPECT_TRUE(accepts_whole(date, R"("2026-12-07")"));
  EXPECT_FALSE(accepts_whole(date, R"("2026-13-07")"));
  const auto uuid = schema(R"({"type":"string","format":"uuid"})");
  EXPECT_TRUE(accepts_whole(uuid, R"("123e4567-e89b-12d3-a456-426614174000")"));
  const auto uni = schema(R"({"type":"string","pattern":"^caf[eé]s?$"})");
  EXPECT_TRUE(accepts_whole(uni, "\"caf\xc3\xa9s\""));
  EXPECT_FALSE(accepts_whole(uni, "\"caf\xc3\xa8\""));
}

TEST(JsonGrammar, RefsAndRecursion) {
  const auto g = schema(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"],"additionalProperties":false}},
      "$ref":"#/$defs/node"})");
  EXPECT_TRUE(accepts_whole(g, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]})"));
  EXPECT_FALSE(accepts_whole(g, R"({"v":1,"kids":[{"w":2}]})"));
  // Pydantic's shape: a model referenced from properties, Optional as anyOf with null
  const auto p = schema(R"({"$defs":{"Addr":{"properties":{"city":{"title":"City","type":"string"}},"required":["city"],
      "title":"Addr","type":"object"}},"properties":{"home":{"$ref":"#/$defs/Addr"},
      "work":{"anyOf":[{"$ref":"#/$defs/Addr"},{"type":"null"}],"default":null}},"required":["home"],"title":"P","type":"object"})");
  EXPECT_TRUE(accepts_whole(p, R"({"home":{"city":"x"},"work":null})"));
  EXPECT_FALSE(accepts_whole(p, R"({"home":{}})"));
}

TEST(JsonGrammar, RefusesWhatItCannotEnforceNamingIt) {
  auto refused = [](const char* text, const char* needle) {
    try {
      JsonGrammar::compile(ojson::parse(text));
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted " << text;
  };
  refused(R"({"type":"object","properties":{"a":{"not":{"type":"string"}}}})", "#/properties/a: the keyword 'not'");
  refused(R"({"type":"array","uniqueItems":true})", "uniqueItems");
  refused(R"({"type":"integer","multipleOf":3})", "multipleOf");
  refused(R"({"type":"string","pattern":"(?=a)b"})", "lookaround");
  refused(R"({"type":"string","pattern":"a\\1"})", "escape");
  refused(R"({"type":"string","minLength":5,"maxLength":2})", "minLength is above maxLength");
  refused(R"({"type":"integer","minimum":5,"maximum":4})", "no value satisfies");
  refused(R"({"$defs":{"a":{"type":"object","properties":{"x":{"$ref":"#/$defs/a"}},"required":["x"]}},"$ref":"#/$defs/a"})",
          "no value satisfies");
  refused(R"({"$ref":"#/$defs/missing"})", "points to nothing");
  refused(R"({"$ref":"https://example.com/s.json"})", "only references inside the schema");
  refused(R"({"type":"wat"})", "unknown type");
  refused(R"(false)", "allows no value");
}

// Every prefix of valid texts completes to a whole valid value, the shortest way.
TEST(JsonGrammar, CompletionFinishesEveryPrefix) {
  struct Case {
    const char* schema;
    const char* text;
  };
  const Case cases[] = {
      {R"({"type":"object"})", R"({"a":[1,2.5e-3,{"b":"x\u00e9\n"},true,false,null,[]],"c":{"d":-0.5}})"},
      {R"({"type":"object","properties":{"name":{"type":"string","minLength":3},"n":{"type":"integer","minimum":10,"maximum":99},
          "t":{"type":"array","items":{"enum":["aa","ab",7]},"minItems":2}},"required":["name","n","t"],"additionalProperties":false})",
       R"({ "name": "caf\u00e9s", "n" : 42, "t": ["ab", 7, "aa"] })"},
      {R"({"type":"object","properties":{"when":{"type":"string","format":"date-time"},"x":{"type":"number","exclusiveMaximum":1}},
          "required":["when","x"]})",
       R"({"when":"2026-12-07T06:47:12Z","x":0.5,"extra":{"k":[]}})"},
      {R"({"anyOf":[{"type":"array","items":{"type":"integer"},"minItems":1},{"type":"string"}]})", R"([1, 22, 333])"},
  };
  for (const Case& c : cases) {
    const auto g = schema(c.schema);
    const std::string t = c.text;
    ASSERT_TRUE(accepts_whole(g, t)) << t;
    for (size_t n = 0; n <= t.size(); ++n) {
      JsonMatcher m(g);
      const std::string prefix = t.substr(0, n);
      if (!prefix.empty() && !m.accepts(prefix)) continue;
      m.push(prefix);
      const std::string whole = prefix + m.completion();
      EXPECT_TRUE(ojson::accept(whole)) << whole;
      EXPECT_TRUE(accepts_whole(g, whole)) << c.schema << "\n" << whole;
    }
  }
  JsonMatcher k(JsonGrammar::any_object());
  k.push("{\"a\":[tr");
  EXPECT_EQ(k.completion(), "ue]}");
  const auto req = schema(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a","b"]})");
  EXPECT_EQ(JsonMatcher(req).completion(), R"({"a":0,"b":""})");
}

// A random walk through the grammar (each step a random byte it accepts, stopping at random and
// completing) ends in valid JSON the grammar accepts whole.
TEST(JsonGrammar, RandomWalksEndInValidValues) {
  const char* schemas[] = {
      R"({"type":"object"})",
      R"({"type":"object","properties":{"id":{"type":"integer","minimum":-3,"maximum":250},"ok":{"type":"boolean"},
          "tags":{"type":"array","items":{"type":"string","maxLength":4},"maxItems":3},
          "kind":{"enum":["a","ab","abc"]}},"required":["id","kind"],"additionalProperties":false})",
      R"({"anyOf":[{"type":"number"},{"type":"array","items":{"anyOf":[{"type":"null"},{"type":"object","properties":{"x":{"type":"string","pattern":"^[a-c]+$"}}}]}}]})",
  };
  std::mt19937 rng(42);
  const std::string alphabet = "{}[]\":,0123456789-+.eEtrufalsn xyzabc\\\n";
  for (const char* s : schemas) {
    const auto g = schema(s);
    for (int walk = 0; walk < 200; ++walk) {
      JsonMatcher m(g);
      std::string text;
      const int steps = int(rng() % 60);
      for (int i = 0; i < steps; ++i) {
        std::string options;
        for (char c : alphabet)
          if (m.accepts(std::string(1, c))) options += c;
        if (options.empty()) break;
        const std::string c(1, options[rng() % options.size()]);
        m.push(c);
        text += c;
      }
      text += m.completion();
      EXPECT_TRUE(ojson::accept(text)) << s << "\n" << text;
      EXPECT_TRUE(accepts_whole(g, text)) << s << "\n" << text;
    }
  }
}

// DSML parameters (V3.2/V4 tool calls): the same schema, written as parameter lines; what the
// output parser makes of the text validates.
TEST(JsonGrammar, DsmlParametersFollowTheSchema) {
  const auto g = schema(R"({"type":"object","properties":{"q":{"type":"string","maxLength":12},"n":{"type":"integer","minimum":1,"maximum":10},
      "opts":{"type":"object","properties":{"deep":{"type":"boolean"}},"additionalProperties":false}},"required":["q","n"],"additionalProperties":false})");
  auto dsml = [](const std::string& key, bool raw, const std::string& value) {
    return "<｜DSML｜parameter name=\"" + key + "\" string=\"" + (raw ? "true" : "false") + "\">" + value + "</｜DSML｜parameter>\n";
  };
  auto whole = [&](const std::string& text) {
    JsonMatcher m(g, JsonMatcher::Syntax::Dsml);
    if (!m.accepts(text)) return false;
    m.push(text);
    return m.complete();
  };
  const std::string end = "</｜DSML｜invoke>";
  EXPECT_TRUE(whole(dsml("q", true, "a <b> \"c\"\n") + dsml("n", false, "3") + end));  // raw text may hold < and quotes
  EXPECT_TRUE(whole(dsml("q", true, "x") + dsml("n", false, " 10 ") + dsml("opts", false, R"({"deep": true})") + end));
  EXPECT_FALSE(whole(dsml("n", false, "1") + dsml("q", true, "x") + end));  // the schema's order
  EXPECT_FALSE(whole(dsml("q", true, "x") + end));                                   // n is required
  EXPECT_FALSE(whole(dsml("q", false, "\"x\"") + dsml("n", false, "3") + end));      // a string is raw
  EXPECT_FALSE(whole(dsml("q", true, "x") + dsml("n", true, "3") + end));             // an integer is JSON
  EXPECT_FALSE(whole(dsml("q", true, "x") + dsml("n", false, "11") + end));           // out of bounds
  EXPECT_FALSE(whole(dsml("q", true, "0123456789abc") + dsml("n", false, "1") + end));  // too long
  EXPECT_FALSE(whole(dsml("q", true, "x") + dsml("z", false, "1") + dsml("n", false, "1") + end));
  EXPECT_FALSE(whole(dsml("q", true, "x") + dsml("q", true, "y") + dsml("n", false, "1") + end));
  const std::string text = dsml("q", true, "caf\xc3\xa9 <i>") + dsml("n", false, "7") + dsml("opts", false, R"({"deep":false})") + end;
  ASSERT_TRUE(whole(text));
  for (size_t n = 0; n <= text.size(); ++n) {  // every prefix completes to whole parameters
    JsonMatcher m(g, JsonMatcher::Syntax::Dsml);
    const std::string prefix = text.substr(0, n);
    if (!prefix.empty() && !m.accepts(prefix)) continue;
    m.push(prefix);
    const std::string done = prefix + m.completion();
    ASSERT_TRUE(whole(done)) << done;
    const ParsedOutput p = OutputParser::parse("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n" + done + "\n</｜DSML｜tool_calls>",
                                               false, ToolCallSyntax::Dsml);
    ASSERT_EQ(p.tool_calls.size(), 1u) << done;
    const ojson a = ojson::parse(p.tool_calls[0].arguments);
    EXPECT_TRUE(a["q"].is_string() && a["n"].is_number_integer() && a["n"] >= 1 && a["n"] <= 10) << a.dump();
  }
}

// The token mask equals stepping every token by itself, at many positions, on a real vocabulary.
TEST(JsonGrammar, TokenMaskMatchesTokenByTokenChecks) {
  auto tok = Tokenizer::load(test::deepseek_v3_tokenizer());
  const TokenTrie trie(*tok);
  const auto g = schema(R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},"n":{"type":"integer","minimum":0,"maximum":500},
      "when":{"type":"string","format":"date"},"k":{"enum":["alpha","beta"]},"xs":{"type":"array","items":{"type":"number"}}},
      "required":["name","n"],"additionalProperties":false})");
  const std::string text = R"({"name": "Ada Lovelace", "n": 42, "when": "2026-12-07", "k": "beta", "xs": [1.5, -2]})";
  ASSERT_TRUE(accepts_whole(g, text));
  std::vector<uint8_t> mask(size_t(tok->vocab_size()));
  for (size_t n = 0; n < text.size(); n += 3) {
    JsonMatcher m(g);
    m.push(text.substr(0, n));
    std::fill(mask.begin(), mask.end(), 7);
    m.allowed_tokens(trie, mask);
    for (size_t i = 0; i < trie.size(); ++i) {
      const int32_t id = trie.id(i);
      ASSERT_EQ(mask[size_t(id)] == 1, m.accepts(trie.bytes(i))) << "after " << text.substr(0, n) << " token " << trie.bytes(i);
    }
  }
}

}  // namespace
}  // namespace whale
