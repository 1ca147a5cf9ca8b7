// libFuzzer target: the streaming output parser must equal one-shot parsing for any split.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tokenizer/output_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool reasoning = data[0] & 1;
  const auto syntax = (data[0] & 6) == 2   ? whale::ToolCallSyntax::V31
                      : (data[0] & 6) == 4 ? whale::ToolCallSyntax::Dsml
                                           : whale::ToolCallSyntax::V3;
  const size_t step = 1 + data[1] % 9;
  std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  whale::ParsedOutput one = whale::OutputParser::parse(text, reasoning, syntax);
  whale::OutputParser p(reasoning, syntax);
  for (size_t i = 0; i < text.size(); i += step) p.push(text.substr(i, step));
  p.finish();
  if (!(p.result() == one)) __builtin_trap();
  return 0;
}
