// DeepSeek chat formats: message lists -> the exact prompt text the official templates
// produce (V3, R1 and V3.1 Jinja templates from the models' tokenizer_config.json; V3.2's
// encoding_dsv32.py and V4's encoding_dsv4.py), quirks included, so a model sees what it was
// trained on.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/output_parser.h"

namespace whale {

enum class ChatFormat { V3, R1, V31, V32, V4 };

struct ChatToolCall {
  std::string id, type = "function", name;
  std::string arguments;  // JSON text
};

struct ChatMessage {
  std::string role;                                  // system, developer, user, assistant, tool
  std::optional<std::string> content;                // null for tool-call-only assistant turns
  std::optional<std::string> reasoning_content;      // an assistant turn's thinking
  std::optional<std::vector<ChatToolCall>> tool_calls;
  std::string tool_call_id;
  bool prefix = false;                               // V3.1: continue this assistant turn
  nlohmann::ordered_json tools;                      // V3.2: tool definitions on a system/developer turn
  nlohmann::ordered_json response_format;            // V3.2: on a system/developer turn

  // From an OpenAI-style message object; errors name the field (`where` locates it).
  static ChatMessage from_json(const nlohmann::ordered_json& j, const std::string& where);
};

struct ChatOptions {
  bool add_generation_prompt = true;
  bool thinking = false;  // V3.1 `thinking`, V3.2 / V4 thinking_mode; R1 always thinks, V3 never
  std::string reasoning_effort;  // V4 in thinking mode: "max" prepends DeepSeek's maximum-effort instruction
  std::string bos_token = "<｜begin▁of▁sentence｜>";
};

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages, const ChatOptions& options);

// Whether the rendered prompt leaves the model inside a think block, and which tool-call
// layout it writes.
bool prompt_opens_reasoning(ChatFormat format, const ChatOptions& options);
ToolCallSyntax tool_call_syntax(ChatFormat format);

// A tool call the answer must open with (tool_choice "required" or a named function), in a
// format's markup: `opening` is forced, the model writes one of `names` (a declared tool; the
// only one for a named choice), `after_name` is forced, then the arguments (one JSON object when
// `json_arguments`; otherwise DSML parameter lines up to `</｜DSML｜invoke>`, which the output
// parser turns into an object), then `closing` is forced.
struct ForcedToolCall {
  std::string opening;
  std::vector<std::string> names;
  std::string after_name;
  bool json_arguments = true;
  std::string closing;
};
ForcedToolCall forced_tool_call(ChatFormat format, std::vector<std::string> names);

// Picks the format from a tokenizer_config.json chat_template (and the model architecture).
// Throws when the template is missing or is not a DeepSeek one; `source` names the file.
ChatFormat detect_chat_format(const std::string& chat_template, const std::string& architecture = "",
                              const std::string& source = "tokenizer_config.json");
ChatFormat parse_chat_format(const std::string& name);  // "v3", "r1", "v3.1", "v3.2", "v4"
const char* chat_format_name(ChatFormat f);

// json.dumps(value, ensure_ascii=False) as Python writes it (", " and ": " separators).
std::string python_json_dumps(const nlohmann::ordered_json& value);

}  // namespace whale
