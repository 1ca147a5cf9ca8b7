#include "tokenizer/chat_format.h"

#include <cmath>

#include "core/error.h"

namespace whale {

using ojson = nlohmann::ordered_json;

namespace {
const std::string kUser = "<｜User｜>", kAssistant = "<｜Assistant｜>", kEos = "<｜end▁of▁sentence｜>";
const std::string kCallsBegin = "<｜tool▁calls▁begin｜>", kCallsEnd = "<｜tool▁calls▁end｜>";
const std::string kCallBegin = "<｜tool▁call▁begin｜>", kCallEnd = "<｜tool▁call▁end｜>", kSep = "<｜tool▁sep｜>";
const std::string kOutputsBegin = "<｜tool▁outputs▁begin｜>", kOutputsEnd = "<｜tool▁outputs▁end｜>";
const std::string kOutputBegin = "<｜tool▁output▁begin｜>", kOutputEnd = "<｜tool▁output▁end｜>";
const std::string kThinkOpen = "<think>", kThinkClose = "</think>";

std::string text(const std::optional<std::string>& s) { return s.value_or(""); }

// Every template starts with BOS and the system turns joined by blank lines.
std::string system_prompt(const std::vector<ChatMessage>& messages) {
  std::string sp;
  bool first = true;
  for (const auto& m : messages) {
    if (m.role != "system") continue;
    sp += (first ? "" : "\n\n") + text(m.content);
    first = false;
  }
  return sp;
}

std::string v3_call(const ChatToolCall& t) {  // V3 / R1 layout
  return t.type + kSep + t.name + "\n```json\n" + t.arguments + "\n```" + kCallEnd;
}

std::string after_last(const std::string& s, const std::string& sep) {
  const size_t p = s.rfind(sep);
  return p == std::string::npos ? s : s.substr(p + sep.size());
}

// DeepSeek-V3 (tokenizer_config.json of deepseek-ai/DeepSeek-V3).
std::string render_v3(const std::vector<ChatMessage>& msgs, const ChatOptions& o) {
  std::string out = o.bos_token + system_prompt(msgs);
  bool is_first = false, is_tool = false, is_output_first = true;
  for (const auto& m : msgs) {
    if (m.role == "user") {
      is_tool = false;
      out += kUser + text(m.content);
    } else if (m.role == "assistant" && !m.content) {
      is_tool = false;
      for (const auto& t : m.tool_calls.value_or(std::vector<ChatToolCall>{})) {
        if (!is_first) {
          out += kAssistant + kCallsBegin + kCallBegin + v3_call(t);
          is_first = true;
        } else {  // the template closes the block only from the second call on
          out += "\n" + kCallBegin + v3_call(t) + kCallsEnd + kEos;
        }
      }
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += kOutputsEnd + *m.content + kEos;
        is_tool = false;
      } else {
        out += kAssistant + *m.content + kEos;
      }
    } else if (m.role == "tool") {
      is_tool = true;
      out += (is_output_first ? kOutputsBegin : "\n") + kOutputBegin + text(m.content) + kOutputEnd;
      is_output_first = false;
    }
  }
  if (is_tool) out += kOutputsEnd;
  if (o.add_generation_prompt && !is_tool) out += kAssistant;
  return out;
}

// DeepSeek-R1 (its tokenizer_config.json after the "<think>\n" update).
std::string render_r1(const std::vector<ChatMessage>& msgs, const ChatOptions& o) {
  std::string out = o.bos_token + system_prompt(msgs);
  bool is_first = false, is_tool = false, is_output_first = true;  // never reset per turn, as in the template
  for (const auto& m : msgs) {
    if (m.role == "user") {
      is_tool = false;
      out += kUser + text(m.content);
    } else if (m.role == "assistant" && m.tool_calls) {
      is_tool = false;
      for (const auto& t : *m.tool_calls) {
        if (!is_first) {
          out += kAssistant + (m.content ? *m.content : "") + kCallsBegin + kCallBegin + v3_call(t);
          is_first = true;
        } else {
          out += "\n" + kCallBegin + v3_call(t);
        }
      }
      out += kCallsEnd + kEos;
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += kOutputsEnd + text(m.content) + kEos;
        is_tool = false;
      } else {
        out += kAssistant + after_last(text(m.content), kThinkClose) + kEos;  // earlier reasoning dropped
      }
    } else if (m.role == "tool") {
      is_tool = true;
      out += (is_output_first ? kOutputsBegin : "") + kOutputBegin + text(m.content) + kOutputEnd;
      is_output_first = false;
    }
  }
  if (is_tool) out += kOutputsEnd;
  if (o.add_generation_prompt && !is_tool) out += kAssistant + kThinkOpen + "\n";
  return out;
}

// DeepSeek-V3.1 (hybrid thinking: `thinking` opens or closes the think block).
std::string render_v31(const std::vector<ChatMessage>& msgs, const ChatOptions& o) {
  std::string out = o.bos_token + system_prompt(msgs);
  bool is_first = false, is_tool = false, is_last_user = false;
  for (const auto& m : msgs) {
    if (m.role == "user") {
      is_tool = is_first = false;
      is_last_user = true;
      out += kUser + text(m.content);
    } else if (m.role == "assistant" && m.tool_calls) {
      if (is_last_user) out += kAssistant + kThinkClose;
      is_last_user = is_first = is_tool = false;
      for (const auto& t : *m.tool_calls) {
        const std::string call = kCallBegin + t.name + kSep + t.arguments + kCallEnd;
        out += is_first ? call : (m.content ? *m.content : "") + kCallsBegin + call;
        is_first = true;
      }
      out += kCallsEnd + kEos;
    } else if (m.role == "assistant") {
      if (is_last_user) out += kAssistant + (m.prefix && o.thinking ? kThinkOpen : kThinkClose);
      is_last_user = false;
      std::string c = text(m.content);
      if (is_tool) {
        is_tool = false;
      } else if (const size_t p = c.find(kThinkClose); p != std::string::npos) {
        c = c.substr(p + kThinkClose.size());  // earlier reasoning dropped
      }
      out += c + kEos;
    } else if (m.role == "tool") {
      is_last_user = false;
      is_tool = true;
      out += kOutputBegin + text(m.content) + kOutputEnd;
    }
  }
  if (o.add_generation_prompt && is_last_user && !is_tool) out += kAssistant + (o.thinking ? kThinkOpen : kThinkClose);
  return out;
}

// ---- DeepSeek-V3.2 (encoding/encoding_dsv32.py) ----
const std::string kDsml = "｜DSML｜";

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// A DSML tools section: the encoder's template with its tokens and one JSON schema per line.
std::string fill_tools_template(const std::string& tmpl, const ojson& tools) {
  std::string schemas;
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    if (!t.is_object() || !t.contains("function")) fail("tools[", i, "]: expected {\"type\": \"function\", \"function\": {...}}");
    schemas += (i ? "\n" : "") + python_json_dumps(t["function"]);
  }
  std::string s = replace_all(tmpl, "{dsml_token}", kDsml);
  s = replace_all(s, "{thinking_start_token}", kThinkOpen);
  s = replace_all(s, "{thinking_end_token}", kThinkClose);
  return replace_all(s, "{tool_schemas}", schemas);
}

std::string render_tools_v32(const ojson& tools) {
  static const std::string tmpl =
      "## Tools\n\nYou have access to a set of tools you can use to answer the user's question.\n"
      "You can invoke functions by writing a \"<{dsml_token}function_calls>\" block like the following as part of your "
      "reply to the user:\n<{dsml_token}function_calls>\n<{dsml_token}invoke name=\"$FUNCTION_NAME\">\n"
      "<{dsml_token}parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</{dsml_token}parameter>\n"
      "...\n</{dsml_token}invoke>\n<{dsml_token}invoke name=\"$FUNCTION_NAME2\">\n...\n</{dsml_token}invoke>\n"
      "</{dsml_token}function_calls>\n\nString and scalar parameters should be specified as is without any escaping or "
      "quotes, while lists and objects should use JSON format. The \"string\" attribute should be set to \"true\" for "
      "string type parameters and \"false\" for other types (numbers, booleans, arrays, objects).\n\nIf the "
      "thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. "
      "Here is an example:\n\n<{dsml_token}function_calls>\n...\n</{dsml_token}function_calls>\n\n<function_results>\n"
      "...\n</function_results>\n\n{thinking_start_token}...thinking about results{thinking_end_token}\n\nHere are the "
      "functions available in JSONSchema format:\n<functions>\n{tool_schemas}\n</functions>\n";
  return fill_tools_template(tmpl, tools);
}

std::string response_format_v32(const ojson& rf) {
  return "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n" + python_json_dumps(rf);
}

// One DSML parameter line per argument: a string as is (string="true"), anything else as JSON.
std::string dsml_parameters(const ojson& args) {
  std::string out;
  for (auto it = args.begin(); it != args.end(); ++it) {
    const bool is_str = it.value().is_string();
    out += (it == args.begin() ? "" : "\n") +
           ("<" + kDsml + "parameter name=\"" + it.key() + "\" string=\"" + (is_str ? "true" : "false") + "\">" +
            (is_str ? it.value().get<std::string>() : python_json_dumps(it.value())) + "</" + kDsml + "parameter>");
  }
  return out;
}

// V3.2's encoder needs arguments that are a JSON object.
std::string dsml_arguments(const ChatToolCall& t) {
  ojson args = ojson::parse(t.arguments, nullptr, false);
  if (args.is_discarded() || !args.is_object())
    fail("tool call '", t.name, "': arguments must be a JSON object, got ", t.arguments);
  return dsml_parameters(args);
}

// An assistant turn's calls as a DSML block ("function_calls" for V3.2, "tool_calls" for V4),
// or nothing without calls.
std::string dsml_calls(const ChatMessage& m, const std::string& block, std::string (*arguments)(const ChatToolCall&)) {
  if (!m.tool_calls || m.tool_calls->empty()) return "";
  std::string joined;
  for (size_t k = 0; k < m.tool_calls->size(); ++k) {
    const ChatToolCall& c = (*m.tool_calls)[k];
    joined += (k ? "\n" : "") + ("<" + kDsml + "invoke name=\"" + c.name + "\">\n" + arguments(c) + "\n</" + kDsml + "invoke>");
  }
  return "\n\n<" + kDsml + block + ">\n" + joined + "\n</" + kDsml + block + ">";
}

std::string render_v32(const std::vector<ChatMessage>& msgs, const ChatOptions& o) {
  const bool thinking = o.thinking;
  int64_t last_user = -1;
  for (int64_t i = int64_t(msgs.size()) - 1; i >= 0; --i)
    if (msgs[size_t(i)].role == "user" || msgs[size_t(i)].role == "developer") {
      last_user = i;
      break;
    }
  std::string out = o.bos_token;
  for (int64_t i = 0; i < int64_t(msgs.size()); ++i) {
    const ChatMessage& m = msgs[size_t(i)];
    const bool has_tools = m.tools.is_array() && !m.tools.empty();
    if (m.role == "system") {
      out += text(m.content);
      if (has_tools) out += "\n\n" + render_tools_v32(m.tools);
      if (!m.response_format.is_null()) out += response_format_v32(m.response_format);
    } else if (m.role == "developer") {
      if (text(m.content).empty()) fail("messages[", i, "]: a developer message needs content");
      std::string dev;
      if (has_tools) dev += "\n\n" + render_tools_v32(m.tools);
      if (!m.response_format.is_null()) dev += response_format_v32(m.response_format);
      dev += "\n\n# The user's message is: " + *m.content;
      out += kUser + dev + kAssistant + (i == last_user && thinking ? kThinkOpen : kThinkClose);
    } else if (m.role == "user") {
      out += kUser + text(m.content) + kAssistant + (i == last_user && thinking ? kThinkOpen : kThinkClose);
    } else if (m.role == "tool") {
      int64_t a = i - 1;
      while (a >= 0 && msgs[size_t(a)].role == "tool") --a;
      if (a < 0 || msgs[size_t(a)].role != "assistant" || !msgs[size_t(a)].tool_calls)
        fail("messages[", i, "]: a tool result must follow an assistant turn with tool calls");
      const int64_t order = i - a, n_calls = int64_t(msgs[size_t(a)].tool_calls->size());
      if (order > n_calls) fail("messages[", i, "]: more tool results than tool calls");
      if (order == 1) out += "\n\n<function_results>";
      out += "\n<result>" + text(m.content) + "</result>";
      if (order == n_calls) out += "\n</function_results>\n\n" + (i >= last_user && thinking ? kThinkOpen : kThinkClose);
    } else if (m.role == "assistant") {
      const std::string calls = dsml_calls(m, "function_calls", dsml_arguments);
      std::string reasoning;
      if (thinking && i > last_user) {  // earlier turns' reasoning is dropped
        if (text(m.reasoning_content).empty() && calls.empty())
          fail("messages[", i, "]: in thinking mode an assistant turn after the last user turn needs reasoning_content or tool_calls");
        reasoning = text(m.reasoning_content) + kThinkClose;
      }
      out += reasoning + text(m.content) + calls + kEos;
    } else {
      fail("messages[", i, "]: unknown role '", m.role, "'");
    }
  }
  return out;
}

// ---- DeepSeek-V4 (encoding/encoding_dsv4.py) ----
// Tool results have no role of their own: they join a user turn as <tool_result> blocks (in
// the order of the calls), and user turns that follow one another merge, blocks joined by
// "\n\n". In thinking mode earlier turns' reasoning is dropped, unless tools are defined.
const std::string kReasoningEffortMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root cause, "
    "rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

std::string render_tools_v4(const ojson& tools) {
  static const std::string tmpl =
      "## Tools\n\nYou have access to a set of tools to help answer the user's question. You can invoke tools by writing "
      "a \"<{dsml_token}tool_calls>\" block like the following:\n\n<{dsml_token}tool_calls>\n<{dsml_token}invoke "
      "name=\"$TOOL_NAME\">\n<{dsml_token}parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE"
      "</{dsml_token}parameter>\n...\n</{dsml_token}invoke>\n<{dsml_token}invoke name=\"$TOOL_NAME2\">\n...\n"
      "</{dsml_token}invoke>\n</{dsml_token}tool_calls>\n\nString parameters should be specified as is and set "
      "`string=\"true\"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set "
      "`string=\"false\"`.\n\nIf thinking_mode is enabled (triggered by {thinking_start_token}), you MUST output your "
      "complete reasoning inside {thinking_start_token}...{thinking_end_token} BEFORE any tool calls or final "
      "response.\n\nOtherwise, output directly after {thinking_end_token} with tool calls or final response.\n\n### "
      "Available Tool Schemas\n\n{tool_schemas}\n\nYou MUST strictly follow the above defined tool name and parameter "
      "schemas to invoke tool calls.\n";
  return fill_tools_template(tmpl, tools);
}

// V4's argument encoding: a string value as is (string="true"), anything else as JSON;
// arguments that are not a JSON object become one parameter named "arguments".
std::string dsml_arguments_v4(const ChatToolCall& t) {
  ojson args = ojson::parse(t.arguments, nullptr, false);
  if (args.is_discarded() || !args.is_object()) args = ojson{{"arguments", t.arguments}};
  return dsml_parameters(args);
}

std::string render_v4(const std::vector<ChatMessage>& input, const ChatOptions& o) {
  // Tool results into user turns (as <tool_result> blocks, in call order); user turns merge.
  struct Turn {
    ChatMessage m;
    std::vector<std::pair<std::string, std::string>> blocks;  // (tool_call_id or "", rendered block)
    bool merged_user = false;
  };
  std::vector<Turn> turns;
  for (size_t i = 0; i < input.size(); ++i) {
    const ChatMessage& m = input[i];
    if (m.role == "tool" || m.role == "user") {
      const bool tool = m.role == "tool";
      std::string block = tool ? "<tool_result>" + text(m.content) + "</tool_result>" : text(m.content);
      if (!turns.empty() && turns.back().merged_user) {
        turns.back().blocks.emplace_back(tool ? m.tool_call_id : "", block);
      } else {
        Turn t;
        t.m.role = "user";
        t.merged_user = true;
        t.blocks.emplace_back(tool ? m.tool_call_id : "", block);
        turns.push_back(std::move(t));
      }
      continue;
    }
    Turn t;
    t.m = m;
    turns.push_back(std::move(t));
  }
  // Results in the order of the preceding assistant turn's calls (ids that match; others keep their place).
  {
    std::vector<std::string> order;
    for (Turn& t : turns) {
      if (t.m.role == "assistant" && t.m.tool_calls) {
        order.clear();
        for (const ChatToolCall& c : *t.m.tool_calls) order.push_back(c.id);
      }
      if (!t.merged_user || order.empty()) continue;
      std::vector<size_t> slots;
      std::vector<std::pair<std::string, std::string>> results;
      for (size_t k = 0; k < t.blocks.size(); ++k)
        if (t.blocks[k].second.rfind("<tool_result>", 0) == 0 && !t.blocks[k].first.empty()) {
          slots.push_back(k);
          results.push_back(t.blocks[k]);
        }
      auto rank = [&](const std::string& id) {
        const auto it = std::find(order.begin(), order.end(), id);
        return it == order.end() ? 0 : int64_t(it - order.begin());
      };
      std::stable_sort(results.begin(), results.end(), [&](const auto& a, const auto& b) { return rank(a.first) < rank(b.first); });
      for (size_t k = 0; k < slots.size(); ++k) t.blocks[slots[k]] = results[k];
    }
  }

  const bool thinking = o.thinking;
  bool any_tools = false;
  for (const Turn& t : turns) any_tools |= t.m.tools.is_array() && !t.m.tools.empty();
  const bool drop = !any_tools;  // reasoning is kept when tools are defined
  auto last_user_of = [](const std::vector<Turn>& ts) {
    for (int64_t i = int64_t(ts.size()) - 1; i >= 0; --i)
      if (ts[size_t(i)].m.role == "user" || ts[size_t(i)].m.role == "developer") return i;
    return int64_t(-1);
  };
  if (thinking && drop) {  // before the last user turn: reasoning removed, developer turns dropped
    const int64_t last = last_user_of(turns);
    std::vector<Turn> kept;
    for (int64_t i = 0; i < int64_t(turns.size()); ++i) {
      Turn& t = turns[size_t(i)];
      if (i < last && t.m.role == "developer") continue;
      if (i < last && t.m.role == "assistant") t.m.reasoning_content.reset();
      kept.push_back(std::move(t));
    }
    turns = std::move(kept);
  }
  const int64_t last_user = last_user_of(turns);

  std::string out = o.bos_token;
  for (int64_t i = 0; i < int64_t(turns.size()); ++i) {
    const Turn& t = turns[size_t(i)];
    const ChatMessage& m = t.m;
    const bool has_tools = m.tools.is_array() && !m.tools.empty();
    if (i == 0 && thinking && o.reasoning_effort == "max") out += kReasoningEffortMax;
    if (m.role == "system") {
      out += text(m.content);
      if (has_tools) out += "\n\n" + render_tools_v4(m.tools);
      if (!m.response_format.is_null()) out += response_format_v32(m.response_format);
    } else if (m.role == "developer") {
      if (text(m.content).empty()) fail("messages[", i, "]: a developer message needs content");
      out += kUser + *m.content;
      if (has_tools) out += "\n\n" + render_tools_v4(m.tools);
      if (!m.response_format.is_null()) out += response_format_v32(m.response_format);
    } else if (m.role == "user") {
      out += kUser;
      for (size_t k = 0; k < t.blocks.size(); ++k) out += (k ? "\n\n" : "") + t.blocks[k].second;
    } else if (m.role == "assistant") {
      const std::string calls = dsml_calls(m, "tool_calls", dsml_arguments_v4);
      std::string reasoning;
      if (thinking && (!drop || i > last_user)) reasoning = text(m.reasoning_content) + kThinkClose;
      out += reasoning + text(m.content) + calls + kEos;
    } else {
      fail("messages[", i, "]: unknown role '", m.role, "'");
    }
    if (i + 1 < int64_t(turns.size()) && turns[size_t(i + 1)].m.role != "assistant") continue;
    if (m.role == "user" || m.role == "developer")
      out += kAssistant + (thinking && (!drop || i >= last_user) ? kThinkOpen : kThinkClose);
  }
  return out;
}

void dump_python(const ojson& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += ", ";
      first = false;
      out += ojson(it.key()).dump(-1, ' ', false, ojson::error_handler_t::replace);
      out += ": ";
      dump_python(it.value(), out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      dump_python(v[i], out);
    }
    out += ']';
  } else if (v.is_number_float()) {
    std::string s = v.dump();
    const double d = v.get<double>();
    if (std::isinf(d)) s = d > 0 ? "Infinity" : "-Infinity";
    else if (std::isnan(d)) s = "NaN";
    out += s;
  } else {
    out += v.dump(-1, ' ', false, ojson::error_handler_t::replace);
  }
}

}  // namespace

std::string python_json_dumps(const ojson& value) {
  std::string out;
  dump_python(value, out);
  return out;
}

ChatMessage ChatMessage::from_json(const ojson& j, const std::string& where) {
  if (!j.is_object()) fail(where, ": a message must be an object");
  ChatMessage m;
  auto role = j.find("role");
  if (role == j.end() || !role->is_string()) fail(where, ".role: must be a string");
  m.role = role->get<std::string>();
  if (m.role != "system" && m.role != "developer" && m.role != "user" && m.role != "assistant" && m.role != "tool")
    fail(where, ".role: unknown role '", m.role, "'");
  if (auto c = j.find("content"); c != j.end() && !c->is_null()) {
    if (c->is_string()) {
      m.content = c->get<std::string>();
    } else if (c->is_array()) {  // content parts: the text parts, joined
      std::string t;
      for (const auto& part : *c) {
        if (!part.is_object() || part.find("type") == part.end() || part["type"] != "text" || !part.contains("text") || !part["text"].is_string())
          fail(where, ".content: only text content parts are supported");
        t += part["text"].get<std::string>();
      }
      m.content = t;
    } else {
      fail(where, ".content: must be a string, an array of text parts, or null");
    }
  }
  for (const char* key : {"reasoning_content", "reasoning"}) {
    if (auto r = j.find(key); r != j.end() && !r->is_null()) {
      if (!r->is_string()) fail(where, ".", key, ": must be a string");
      m.reasoning_content = r->get<std::string>();
      break;
    }
  }
  if (auto tc = j.find("tool_calls"); tc != j.end() && !tc->is_null()) {
    if (!tc->is_array()) fail(where, ".tool_calls: must be an array");
    m.tool_calls.emplace();
    for (size_t i = 0; i < tc->size(); ++i) {
      const ojson& c = (*tc)[i];
      const std::string w = where + ".tool_calls[" + std::to_string(i) + "]";
      if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) fail(w, ": needs a \"function\" object");
      const ojson& f = c["function"];
      ChatToolCall t;
      if (!f.contains("name") || !f["name"].is_string()) fail(w, ".function.name: must be a string");
      t.name = f["name"].get<std::string>();
      if (c.contains("id") && c["id"].is_string()) t.id = c["id"].get<std::string>();
      if (c.contains("type") && c["type"].is_string()) t.type = c["type"].get<std::string>();
      const ojson args = f.value("arguments", ojson("{}"));
      if (args.is_string()) t.arguments = args.get<std::string>();
      else if (args.is_object()) t.arguments = python_json_dumps(args);
      else fail(w, ".function.arguments: must be a JSON string or object");
      m.tool_calls->push_back(std::move(t));
    }
  }
  if (auto id = j.find("tool_call_id"); id != j.end() && id->is_string()) m.tool_call_id = id->get<std::string>();
  if (auto p = j.find("prefix"); p != j.end() && p->is_boolean()) m.prefix = p->get<bool>();
  if (auto t = j.find("tools"); t != j.end() && !t->is_null()) {
    if (!t->is_array()) fail(where, ".tools: must be an array");
    m.tools = *t;
  }
  if (auto r = j.find("response_format"); r != j.end() && !r->is_null()) m.response_format = *r;
  return m;
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages, const ChatOptions& options) {
  switch (format) {
    case ChatFormat::V3: return render_v3(messages, options);
    case ChatFormat::R1: return render_r1(messages, options);
    case ChatFormat::V31: return render_v31(messages, options);
    case ChatFormat::V32: return render_v32(messages, options);
    case ChatFormat::V4: return render_v4(messages, options);
  }
  return "";
}

bool prompt_opens_reasoning(ChatFormat format, const ChatOptions& o) {
  switch (format) {
    case ChatFormat::V3: return false;
    case ChatFormat::R1: return true;
    case ChatFormat::V31: case ChatFormat::V32: case ChatFormat::V4: return o.thinking;
  }
  return false;
}

ToolCallSyntax tool_call_syntax(ChatFormat format) {
  switch (format) {
    case ChatFormat::V31: return ToolCallSyntax::V31;
    case ChatFormat::V32: case ChatFormat::V4: return ToolCallSyntax::Dsml;
    default: return ToolCallSyntax::V3;
  }
}

ForcedToolCall forced_tool_call(ChatFormat format, std::vector<std::string> names) {
  ForcedToolCall f;
  f.names = std::move(names);
  switch (tool_call_syntax(format)) {
    case ToolCallSyntax::Dsml: {  // the block as DeepSeek's encoders write it
      const std::string block = format == ChatFormat::V4 ? "tool_calls" : "function_calls";
      f.opening = "\n\n<｜DSML｜" + block + ">\n<｜DSML｜invoke name=\"";
      f.after_name = "\">\n";
      f.json_arguments = false;  // parameter lines, up to </｜DSML｜invoke>
      f.closing = "\n</｜DSML｜" + block + ">";
      break;
    }
    case ToolCallSyntax::V31:  // NAME<sep>ARGS<call_end>
      f.opening = kCallsBegin + kCallBegin;
      f.after_name = kSep;
      f.closing = kCallEnd + kCallsEnd;
      break;
    case ToolCallSyntax::V3:  // function<sep>NAME\n```json\nARGS\n```<call_end>
      f.opening = kCallsBegin + kCallBegin + "function" + kSep;
      f.after_name = "\n```json\n";
      f.closing = "\n```" + kCallEnd + kCallsEnd;
      break;
  }
  return f;
}

ChatFormat detect_chat_format(const std::string& tpl, const std::string& architecture, const std::string& source) {
  // V3.2 and V4 ship no Jinja template: their encoders are Python code beside the weights.
  if (architecture == "DeepseekV4ForCausalLM" || tpl.find("DSML｜tool_calls") != std::string::npos) return ChatFormat::V4;
  if (architecture == "DeepseekV32ForCausalLM" || tpl.find("DSML") != std::string::npos) return ChatFormat::V32;
  if (tpl.empty()) fail(source, ": no chat_template; choose one with --chat-format v3|r1|v3.1|v3.2");
  if (tpl.find(kUser) == std::string::npos || tpl.find(kAssistant) == std::string::npos)
    fail(source, ": the chat_template is not a DeepSeek one; choose a format with --chat-format v3|r1|v3.1|v3.2");
  if (tpl.find("thinking") != std::string::npos && tpl.find(kThinkClose) != std::string::npos) return ChatFormat::V31;
  if (tpl.find("<think>\\n") != std::string::npos || tpl.find("<think>\n'") != std::string::npos) return ChatFormat::R1;
  return ChatFormat::V3;
}

ChatFormat parse_chat_format(const std::string& name) {
  if (name == "v3") return ChatFormat::V3;
  if (name == "r1") return ChatFormat::R1;
  if (name == "v3.1") return ChatFormat::V31;
  if (name == "v3.2") return ChatFormat::V32;
  if (name == "v4") return ChatFormat::V4;
  fail("unknown chat format '", name, "' (expected v3, r1, v3.1, v3.2 or v4)");
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::V3: return "v3";
    case ChatFormat::R1: return "r1";
    case ChatFormat::V31: return "v3.1";
    case ChatFormat::V32: return "v3.2";
    case ChatFormat::V4: return "v4";
  }
  return "?";
}

}  // namespace whale
