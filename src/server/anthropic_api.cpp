// Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens), which Claude Code and
// other agents built on the Anthropic SDK speak. A request is translated into the OpenAI chat
// shape and parsed by the same code (tools, tool_choice, thinking, sampling, context checks);
// the engine's output is written back as content blocks (thinking, text, tool_use) with
// Anthropic's stop reasons, usage and streaming events.
#include "core/error.h"
#include "server/api.h"

namespace whale {

using namespace api;

namespace {

// A `system` or tool_result `content`: a string or an array of text blocks.
std::string text_of(const ojson& c, const std::string& where) {
  if (c.is_null()) return "";
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) throw ApiError(400, "'" + where + "' must be a string or an array of text blocks", where);
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const ojson& b = c[i];
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (!b.is_object() || get_string(b, "type", "", at) != "text" || !b.contains("text") || !b["text"].is_string())
      throw ApiError(400, "'" + at + "' must be a text block {\"type\": \"text\", \"text\": ...} (images are not supported yet)", at);
    out += (out.empty() ? "" : "\n") + b["text"].get<std::string>();
  }
  return out;
}

// The Messages request as an OpenAI chat request.
ojson to_openai(const ojson& b, bool need_max_tokens) {
  ojson o = ojson::object();
  if (need_max_tokens && (!b.contains("max_tokens") || b["max_tokens"].is_null()))
    throw ApiError(400, "'max_tokens' is required", "max_tokens");
  for (const char* k : {"model", "max_tokens", "temperature", "top_p", "top_k", "stream", "thinking"})
    if (b.contains(k)) o[k] = b[k];
  if (o.contains("temperature") && o["temperature"].is_number() && o["temperature"].get<double>() > 1.0)
    throw ApiError(400, "'temperature' must be in [0, 1]", "temperature");
  if (b.contains("stop_sequences") && !b["stop_sequences"].is_null()) {
    if (!b["stop_sequences"].is_array()) throw ApiError(400, "'stop_sequences' must be an array of strings", "stop_sequences");
    o["stop"] = b["stop_sequences"];
  }
  ojson msgs = ojson::array();
  if (b.contains("system")) {
    const std::string sys = text_of(b["system"], "system");
    if (!sys.empty()) msgs.push_back({{"role", "system"}, {"content", sys}});
  }
  auto m = b.find("messages");
  if (m == b.end() || !m->is_array() || m->empty()) throw ApiError(400, "'messages' must be a non-empty array", "messages");
  for (size_t i = 0; i < m->size(); ++i) {
    const ojson& x = (*m)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!x.is_object()) throw ApiError(400, "'" + at + "' must be an object", at);
    const std::string role = get_string(x, "role", "", at);
    if (role != "user" && role != "assistant") throw ApiError(400, "'" + at + ".role' must be \"user\" or \"assistant\"", at + ".role");
    const ojson& c = x.contains("content") ? x["content"] : ojson();
    if (c.is_string()) {
      msgs.push_back({{"role", role}, {"content", c}});
      continue;
    }
    if (!c.is_array()) throw ApiError(400, "'" + at + ".content' must be a string or an array of blocks", at + ".content");
    std::string text, thinking;
    ojson calls = ojson::array();
    for (size_t k = 0; k < c.size(); ++k) {
      const ojson& blk = c[k];
      const std::string bat = at + ".content[" + std::to_string(k) + "]";
      if (!blk.is_object()) throw ApiError(400, "'" + bat + "' must be a content block", bat);
      const std::string type = get_string(blk, "type", "", bat);
      if (type == "text") {
        text += get_string(blk, "text", "", bat);
      } else if (type == "thinking" && role == "assistant") {
        thinking += get_string(blk, "thinking", "", bat);
      } else if (type == "redacted_thinking" && role == "assistant") {
        // opaque to any other model
      } else if (type == "tool_use" && role == "assistant") {
        const ojson input = blk.contains("input") ? blk["input"] : ojson::object();
        if (!input.is_object()) throw ApiError(400, "'" + bat + ".input' must be an object", bat + ".input");
        calls.push_back({{"id", get_string(blk, "id", "", bat)},
                         {"type", "function"},
                         {"function", {{"name", get_string(blk, "name", "", bat)}, {"arguments", input.dump()}}}});
      } else if (type == "tool_result" && role == "user") {
        std::string result = text_of(blk.contains("content") ? blk["content"] : ojson(""), bat + ".content");
        if (get_bool(blk, "is_error", false, bat)) result = "Error: " + result;
        msgs.push_back({{"role", "tool"}, {"tool_call_id", get_string(blk, "tool_use_id", "", bat)}, {"content", result}});
      } else {
        throw ApiError(400, "'" + bat + "': content blocks of type '" + type + "' are not supported in " + role +
                                " messages (text, thinking, tool_use, tool_result; images not yet)",
                       bat + ".type");
      }
    }
    if (role == "assistant") {
      ojson a = {{"role", "assistant"}, {"content", text.empty() && !calls.empty() ? ojson(nullptr) : ojson(text)}};
      if (!thinking.empty()) a["reasoning_content"] = thinking;
      if (!calls.empty()) a["tool_calls"] = calls;
      msgs.push_back(a);
    } else if (!text.empty() || msgs.empty() || msgs.back()["role"] != "tool") {
      msgs.push_back({{"role", "user"}, {"content", text}});
    }
  }
  o["messages"] = msgs;
  if (b.contains("tools") && !b["tools"].is_null())
    o["tools"] = flat_tools(b["tools"], "custom", "custom", "input_schema",
                            "(Anthropic's server tools) are not supported; declare it with an input_schema");
  if (b.contains("tool_choice") && !b["tool_choice"].is_null()) {
    const ojson& tc = b["tool_choice"];
    if (!tc.is_object()) throw ApiError(400, "'tool_choice' must be an object {\"type\": auto|any|tool|none}", "tool_choice");
    const std::string type = get_string(tc, "type", "", "tool_choice");
    if (type == "auto") o["tool_choice"] = "auto";
    else if (type == "any") o["tool_choice"] = "required";
    else if (type == "none") o["tool_choice"] = "none";
    else if (type == "tool") o["tool_choice"] = {{"type", "function"}, {"function", {{"name", get_string(tc, "name", "", "tool_choice")}}}};
    else throw ApiError(400, "'tool_choice.type' must be auto, any, tool or none", "tool_choice.type");
  }
  return o;
}

std::string event(const char* name, const ojson& data) {
  return std::string("event: ") + name + "\ndata: " + data.dump(-1, ' ', false, ojson::error_handler_t::replace) + "\n\n";
}

ojson usage_of(const GenerationStats& s) {
  return {{"input_tokens", s.prompt_tokens - s.cached_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", s.cached_tokens},
          {"output_tokens", s.generated_tokens}};
}

// A tool call's arguments as the `input` object, or null when the model did not write a JSON
// object (such a call is returned as text: a tool_use block always has an object).
ojson call_input(const std::string& arguments) {
  ojson j = ojson::parse(arguments, nullptr, false);
  return j.is_object() ? j : ojson();
}
std::string call_as_text(const std::string& name, const std::string& arguments) { return name + " " + arguments; }

std::string stop_reason(const RequestOutput& out, bool tool_use) {
  const std::string& r = out.stats.finish_reason;
  if (r == "length") return "max_tokens";
  if (tool_use) return "tool_use";
  if (!out.stats.stop_sequence.empty()) return "stop_sequence";
  return "end_turn";
}

ojson stop_sequence_json(const RequestOutput& out) {
  return out.stats.stop_sequence.empty() ? ojson(nullptr) : ojson(out.stats.stop_sequence);
}

}  // namespace

ojson anthropic_error_body(int status, const std::string& message) {
  const char* type = status == 400 || status == 422 ? "invalid_request_error"
                     : status == 401               ? "authentication_error"
                     : status == 403               ? "permission_error"
                     : status == 404               ? "not_found_error"
                     : status == 413               ? "request_too_large"
                     : status == 429               ? "rate_limit_error"
                     : status == 503 || status == 529 ? "overloaded_error"
                                                      : "api_error";
  return {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

Reply anthropic_count_tokens(const ojson& body, const ServedModel& m) {
  ojson o = to_openai(body, false);
  o["max_tokens"] = 1;
  o.erase("stream");
  Job job = parse_openai_chat(o, m);
  Reply r;
  r.body = ojson{{"input_tokens", job.requests.at(0).prompt.size()}}.dump();
  return r;
}

Reply anthropic_messages(const ojson& body, const ServedModel& m) {
  Job job = parse_openai_chat(to_openai(body, true), m);
  const int64_t prompt_tokens = int64_t(job.requests.at(0).prompt.size());
  start(job, m);
  const std::string id = random_id("msg_");
  Reply reply;
  if (!job.stream) {
    reply.stream = [job, id, &m](const std::function<bool(std::string_view)>& write) mutable {
      RequestOutput fin;
      Heartbeat alive(write, " ");
      if (!drive(job, [&](size_t, const RequestOutput& out) {
            if (out.finished) fin = out;
            return true;
          }, std::ref(alive)))
        return;
      if (!fin.error.empty()) {
        write(anthropic_error_body(500, "generation failed: " + fin.error).dump());
        return;
      }
      const ParsedOutput& r = fin.result;
      ojson content = ojson::array(), calls = ojson::array();
      std::string text = r.content;
      for (const ParsedToolCall& c : r.tool_calls) {
        ojson input = call_input(c.arguments);
        if (input.is_null()) text += call_as_text(c.name, c.arguments);
        else calls.push_back({{"type", "tool_use"}, {"id", random_id("toolu_")}, {"name", c.name}, {"input", input}});
      }
      if (!r.reasoning.empty()) content.push_back({{"type", "thinking"}, {"thinking", r.reasoning}, {"signature", ""}});
      if (!text.empty() || (content.empty() && calls.empty())) content.push_back({{"type", "text"}, {"text", text}});
      for (auto& c : calls) content.push_back(c);
      const ojson res = {{"id", id},
                         {"type", "message"},
                         {"role", "assistant"},
                         {"model", m.id},
                         {"content", content},
                         {"stop_reason", stop_reason(fin, !calls.empty())},
                         {"stop_sequence", stop_sequence_json(fin)},
                         {"usage", usage_of(fin.stats)}};
      write(res.dump(-1, ' ', false, ojson::error_handler_t::replace));
    };
    return reply;
  }

  reply.content_type = "text/event-stream";
  reply.stream = [job, id, prompt_tokens, &m](const std::function<bool(std::string_view)>& write) mutable {
    const ojson start_msg = {{"id", id},          {"type", "message"},         {"role", "assistant"},
                             {"model", m.id},     {"content", ojson::array()}, {"stop_reason", nullptr},
                             {"stop_sequence", nullptr},
                             {"usage", {{"input_tokens", prompt_tokens}, {"output_tokens", 0}}}};
    if (!write(event("message_start", {{"type", "message_start"}, {"message", start_msg}}))) return;
    int index = -1;
    std::string open;  // the type of the block being written ("" when none)
    bool any_tool_use = false;
    bool pending = false;  // a tool call being collected: sent whole once its arguments are complete
    std::string pending_name, pending_args;
    auto close = [&]() {
      if (open.empty()) return true;
      if (open == "thinking" &&
          !write(event("content_block_delta", {{"type", "content_block_delta"}, {"index", index},
                                               {"delta", {{"type", "signature_delta"}, {"signature", ""}}}})))
        return false;
      open.clear();
      return write(event("content_block_stop", {{"type", "content_block_stop"}, {"index", index}}));
    };
    auto text_delta = [&](const std::string& type, const std::string& text) {
      if (open != type) {
        if (!close()) return false;
        open = type;
        ++index;
        const ojson block = type == "thinking" ? ojson{{"type", "thinking"}, {"thinking", ""}} : ojson{{"type", "text"}, {"text", ""}};
        if (!write(event("content_block_start", {{"type", "content_block_start"}, {"index", index}, {"content_block", block}})))
          return false;
      }
      const ojson delta = type == "thinking" ? ojson{{"type", "thinking_delta"}, {"thinking", text}}
                                             : ojson{{"type", "text_delta"}, {"text", text}};
      return write(event("content_block_delta", {{"type", "content_block_delta"}, {"index", index}, {"delta", delta}}));
    };
    auto flush_call = [&]() {
      if (!pending) return true;
      pending = false;
      const ojson input = call_input(pending_args);
      if (input.is_null()) return text_delta("text", call_as_text(pending_name, pending_args));
      if (!close()) return false;
      any_tool_use = true;
      ++index;
      const ojson block = {{"type", "tool_use"}, {"id", random_id("toolu_")}, {"name", pending_name}, {"input", ojson::object()}};
      return write(event("content_block_start", {{"type", "content_block_start"}, {"index", index}, {"content_block", block}})) &&
             write(event("content_block_delta", {{"type", "content_block_delta"}, {"index", index},
                                                 {"delta", {{"type", "input_json_delta"}, {"partial_json", input.dump()}}}})) &&
             write(event("content_block_stop", {{"type", "content_block_stop"}, {"index", index}}));
    };
    Heartbeat alive(write, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
    drive(job, [&](size_t, const RequestOutput& out) {
      alive.wrote();
      for (const ParseEvent& e : out.events) {
        bool ok = true;
        switch (e.kind) {
          case ParseEvent::Reasoning: ok = flush_call() && text_delta("thinking", e.text); break;
          case ParseEvent::Content: ok = flush_call() && text_delta("text", e.text); break;
          case ParseEvent::ToolCallStart:
            ok = flush_call();
            pending = true, pending_name = e.text, pending_args.clear();
            break;
          case ParseEvent::ToolCallArguments: pending_args += e.text; break;
        }
        if (!ok) return false;
      }
      if (!out.finished) return true;
      if (!flush_call()) return false;
      if (!out.error.empty())
        return write(event("error", anthropic_error_body(500, "generation failed: " + out.error)));
      if (index < 0 && !text_delta("text", "")) return false;  // a message always has a block
      if (!close()) return false;
      const ojson delta = {{"type", "message_delta"},
                           {"delta", {{"stop_reason", stop_reason(out, any_tool_use)}, {"stop_sequence", stop_sequence_json(out)}}},
                           {"usage", usage_of(out.stats)}};
      return write(event("message_delta", delta)) && write(event("message_stop", {{"type", "message_stop"}}));
    }, std::ref(alive));
  };
  return reply;
}

}  // namespace whale
