// The output parser: reasoning / content / tool calls, identical for one-shot and any chunking.
#include <random>

#include "tokenizer/output_parser.h"
#include "test_util.h"

namespace whale {
namespace {

ParsedOutput streamed(std::string_view text, bool reasoning, ToolCallSyntax syntax, std::mt19937& rng) {
  OutputParser p(reasoning, syntax);
  ParsedOutput from_events;
  auto apply = [&](const std::vector<ParseEvent>& events) {
    for (const auto& e : events) {
      switch (e.kind) {
        case ParseEvent::Reasoning: from_events.reasoning += e.text; break;
        case ParseEvent::Content: from_events.content += e.text; break;
        case ParseEvent::ToolCallStart:
          EXPECT_EQ(e.tool_index, int(from_events.tool_calls.size()));
          from_events.tool_calls.push_back({e.text, ""});
          break;
        case ParseEvent::ToolCallArguments:
          EXPECT_EQ(e.tool_index, int(from_events.tool_calls.size()) - 1);
          from_events.tool_calls.back().arguments += e.text;
          break;
      }
    }
  };
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = 1 + rng() % 7;
    apply(p.push(text.substr(i, n)));
    i += n;
  }
  apply(p.finish());
  EXPECT_TRUE(from_events == p.result()) << "events disagree with the accumulated result";
  return p.result();
}

struct Case {
  const char* text;
  bool starts_in_reasoning;
  ToolCallSyntax syntax;
  ParsedOutput expected;
};

const Case kCases[] = {
    {"Plain answer.", false, ToolCallSyntax::V3, {"", "Plain answer.", {}}},
    {"<think>Let me think.\nOK</think>\n\nThe answer is 4.", false, ToolCallSyntax::V3,
     {"Let me think.\nOK", "\n\nThe answer is 4.", {}}},
    // R1: the prompt ended with <think>\n, so the output starts inside the reasoning.
    {"2+2 is 4.\n</think>\n\nFour.", true, ToolCallSyntax::V3, {"2+2 is 4.\n", "\n\nFour.", {}}},
    {"no close tag, still thinking", true, ToolCallSyntax::V31, {"no close tag, still thinking", "", {}}},
    {"a < b and <thin is not a tag; </think> here is literal", false, ToolCallSyntax::V3,
     {"", "a < b and <thin is not a tag; </think> here is literal", {}}},
    {"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```"
     "<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>"
     "<｜tool▁calls▁end｜>",
     false, ToolCallSyntax::V3, {"", "", {{"get_weather", "{\"city\": \"Paris\"}"}, {"get_time", "{}"}}}},
    {"Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>search<｜tool▁sep｜>{\"q\": \"a`b\\n\"}<｜tool▁call▁end｜>"
     "<｜tool▁call▁begin｜>add<｜tool▁sep｜>{\"a\": 1, \"b\": 2}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
     false, ToolCallSyntax::V31, {"", "Checking.", {{"search", "{\"q\": \"a`b\\n\"}"}, {"add", "{\"a\": 1, \"b\": 2}"}}}},
    {"<think>plan: call it</think>Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"x\": [1, 2]}"
     "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
     false, ToolCallSyntax::V31, {"plan: call it", "Sure.", {{"f", "{\"x\": [1, 2]}"}}}},
    {"你好<think>not at start</think>世界", false, ToolCallSyntax::V3, {"", "你好<think>not at start</think>世界", {}}},
    // Generation cut off inside a tool call: what arrived is kept.
    {"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": 1", false, ToolCallSyntax::V31,
     {"", "", {{"f", "{\"a\": 1"}}}},
    {"<thi", false, ToolCallSyntax::V3, {"", "<thi", {}}},
    // DSML (V3.2's function_calls, V4's tool_calls, ASCII bars): markup never reaches content,
    // arguments are always a JSON object.
    {"<think>need the weather</think>Let me check.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
     "<｜DSML｜parameter name=\"city\" string=\"true\">Paris \"centre\"</｜DSML｜parameter>\n"
     "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
     "<｜DSML｜invoke name=\"now\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>",
     false, ToolCallSyntax::Dsml,
     {"need the weather", "Let me check.", {{"get_weather", "{\"city\": \"Paris \\\"centre\\\"\", \"days\": 3}"}, {"now", "{}"}}}},
    {"\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"opts\" string=\"false\">"
     "{\"a\": [1, 2]}</｜DSML｜parameter>\n<｜DSML｜parameter name=\"note\" string=\"false\">not json</｜DSML｜parameter>\n"
     "</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
     false, ToolCallSyntax::Dsml, {"", "", {{"f", "{\"opts\": {\"a\": [1, 2]}, \"note\": \"not json\"}"}}}},
    {"ok\n\n<|DSML|tool_calls>\n<|DSML|invoke name=\"g\">\n<|DSML|parameter name=\"x\" string=\"true\">1</|DSML|parameter>\n"
     "</|DSML|invoke>\n</|DSML|tool_calls>",
     false, ToolCallSyntax::Dsml, {"", "ok", {{"g", "{\"x\": \"1\"}"}}}},
    // Cut off by the end of generation: the call closes, nothing leaks.
    {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"h\">\n<｜DSML｜parameter name=\"q\" string=\"true\">half",
     false, ToolCallSyntax::Dsml, {"", "", {{"h", "{\"q\": \"half\"}"}}}},
    {"<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"h\">\n<｜DSML｜param", false, ToolCallSyntax::Dsml, {"", "", {{"h", "{}"}}}},
    {"ok\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_", false, ToolCallSyntax::Dsml, {"", "ok", {}}},
    {"<｜DSML｜function_calls>\ngarbage <b>\n<｜DSML｜invoke name=\"k\">junk</｜DSML｜invoke>", false, ToolCallSyntax::Dsml,
     {"", "", {{"k", "{}"}}}},
    {"two\n\nparagraphs, a | bar and <｜DSML｜ text", false, ToolCallSyntax::Dsml,
     {"", "two\n\nparagraphs, a | bar and <｜DSML｜ text", {}}},
    {"ends with a partial marker </thi", true, ToolCallSyntax::V3, {"ends with a partial marker </thi", "", {}}},
    // After a thinking budget closed the reasoning, a model often reasons on and closes it again:
    // that `</think>` is markup, never answer text (V3 / V3.1 and DSML formats alike).
    {"cut short</think>still thinking</think>56", true, ToolCallSyntax::V31, {"cut short", "still thinking56", {}}},
    {"<think>a</think>b</think>c</thi", false, ToolCallSyntax::Dsml, {"a", "bc</thi", {}}},
};

TEST(OutputParser, OneShotMatchesExpectations) {
  for (const Case& c : kCases) {
    ParsedOutput got = OutputParser::parse(c.text, c.starts_in_reasoning, c.syntax);
    EXPECT_EQ(got.reasoning, c.expected.reasoning) << c.text;
    EXPECT_EQ(got.content, c.expected.content) << c.text;
    ASSERT_EQ(got.tool_calls.size(), c.expected.tool_calls.size()) << c.text;
    for (size_t i = 0; i < got.tool_calls.size(); ++i) {
      EXPECT_EQ(got.tool_calls[i].name, c.expected.tool_calls[i].name) << c.text;
      EXPECT_EQ(got.tool_calls[i].arguments, c.expected.tool_calls[i].arguments) << c.text;
    }
  }
}

TEST(OutputParser, StreamingEqualsOneShotForRandomChunkings) {
  std::mt19937 rng(17);
  for (const Case& c : kCases) {
    ParsedOutput one = OutputParser::parse(c.text, c.starts_in_reasoning, c.syntax);
    for (int rep = 0; rep < 200; ++rep) {
      ParsedOutput s = streamed(c.text, c.starts_in_reasoning, c.syntax, rng);
      ASSERT_TRUE(s == one) << c.text << " (chunking " << rep << ")";
    }
  }
}

TEST(OutputParser, NothingIsHeldBackLongerThanAMarker) {
  OutputParser p(false, ToolCallSyntax::V3);
  auto ev = p.push("Hello wor");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].text, "Hello wor");
  ev = p.push("ld <");  // "<" may start <｜tool▁calls▁begin｜>
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].text, "ld ");
  ev = p.push("b>");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].text, "<b>");
}

}  // namespace
}  // namespace whale
