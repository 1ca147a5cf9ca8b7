// Splits a model's generated text into reasoning, answer content and tool calls, as the
// text streams in. Markers (<think>, </think>, <｜tool▁calls▁begin｜>, ...) may arrive split
// across chunks in any way: text that could still be the start of a marker is held back
// until it is decided, so streaming and one-shot parsing give identical results.
//
// Tool-call layouts (DeepSeek chat formats):
//   V3:   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//         [\n<｜tool▁call▁begin｜>...]<｜tool▁calls▁end｜>
//   V3.1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
//   DSML (V3.2, V4): \n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="NAME">\n
//         <｜DSML｜parameter name="P" string="true|false">VALUE</｜DSML｜parameter>\n...</｜DSML｜invoke>\n
//         </｜DSML｜function_calls>   (V4 names the block tool_calls; both are accepted, and ASCII
//         bars |DSML| too). Arguments become a JSON object: string="true" values as JSON strings,
//         others as the JSON the model wrote (a string when it is not JSON), so they always parse.
//         Markup is never content: malformed text inside a block is dropped, and a block cut off
//         by the end of generation closes what it opened (a call whose name was cut off is dropped).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace whale {

enum class ToolCallSyntax { V3, V31, Dsml };

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // JSON text as the model wrote it
};

struct ParsedOutput {
  std::string reasoning, content;
  std::vector<ParsedToolCall> tool_calls;
  bool operator==(const ParsedOutput& o) const;
};

// One piece of streamed output.
struct ParseEvent {
  enum Kind { Reasoning, Content, ToolCallStart, ToolCallArguments } kind;
  std::string text;  // the delta (ToolCallStart: the function name)
  int tool_index = -1;
};

class OutputParser {
 public:
  // starts_in_reasoning: the prompt already opened a think block (R1, V3.1 thinking mode).
  OutputParser(bool starts_in_reasoning, ToolCallSyntax syntax);

  // Feeds more text; returns the events it completed.
  std::vector<ParseEvent> push(std::string_view text);
  // End of generation: releases anything held back.
  std::vector<ParseEvent> finish();

  bool in_reasoning() const { return state_ == State::Reasoning; }
  const ParsedOutput& result() const { return result_; }  // everything so far

  static ParsedOutput parse(std::string_view text, bool starts_in_reasoning, ToolCallSyntax syntax);

 private:
  enum class State { Start, Reasoning, Content, ToolCalls, ToolName, ToolArgsOpen, ToolArgs, Done,
                     DsmlBlock, DsmlInvoke, DsmlParam };
  void step(bool final, std::vector<ParseEvent>& out);
  // One DSML state's work (Content included); false when it needs more text.
  bool step_dsml(bool final, std::vector<ParseEvent>& out);
  void emit(ParseEvent::Kind kind, std::string_view text, std::vector<ParseEvent>& out);

  State state_;

  bool reasoned_ = false;  // a think block was closed: a later `</think>` is stray markup
  ToolCallSyntax syntax_;
  std::string buf_;  // text received but not yet consumed
  ParsedOutput result_;
  std::string param_name_;      // DSML: the parameter being read
  bool param_string_ = false;   // its string="true"
  bool first_param_ = true;     // no parameter written yet in this invoke
};

}  // namespace whale
