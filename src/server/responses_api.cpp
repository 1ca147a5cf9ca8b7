// OpenAI's Responses API (/v1/responses), which Codex CLI and newer OpenAI-SDK agents speak.
// The request's input items are translated into a chat request and parsed by the chat
// completions code (tools, tool_choice, reasoning, JSON mode, sampling); the output is written
// back as output items (reasoning, message, function_call) with the Responses usage, status
// and streaming events. Stateless: `previous_response_id` is refused (send the whole input, as
// `store: false` clients do).
#include "core/error.h"
#include "server/api.h"

namespace whale {

using namespace api;

namespace {

// Text of an input message's content: a string, or input_text / output_text parts.
std::string content_text(const ojson& c, const std::string& where) {
  if (c.is_null()) return "";
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) throw ApiError(400, "'" + where + "' must be a string or an array of content parts", where);
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const ojson& p = c[i];
    const std::string at = where + "[" + std::to_string(i) + "]";
    const std::string type = p.is_object() ? get_string(p, "type", "", at) : "";
    if (type != "input_text" && type != "output_text" && type != "text")
      throw ApiError(400, "'" + at + "': content parts of type '" + type + "' are not supported (input_text, output_text; images not yet)",
                     at + ".type");
    out += get_string(p, "text", "", at);
  }
  return out;
}

ojson to_chat(const ojson& b) {
  if (b.contains("previous_response_id") && !b["previous_response_id"].is_null())
    throw ApiError(400, "'previous_response_id' is not supported: whale keeps no responses; send the whole conversation as 'input'",
                   "previous_response_id");
  ojson o = ojson::object();
  // "thinking" (DeepSeek's switch with budget_tokens) passes through as in chat completions.
  for (const char* k : {"model", "temperature", "top_p", "stream", "parallel_tool_calls", "thinking"})
    if (b.contains(k)) o[k] = b[k];
  if (b.contains("max_output_tokens") && !b["max_output_tokens"].is_null()) o["max_tokens"] = b["max_output_tokens"];
  if (auto r = b.find("reasoning"); r != b.end() && !r->is_null()) {
    if (!r->is_object()) throw ApiError(400, "'reasoning' must be an object", "reasoning");
    if (r->contains("effort") && !(*r)["effort"].is_null()) o["reasoning_effort"] = (*r)["effort"];
  }
  if (auto t = b.find("text"); t != b.end() && !t->is_null()) {
    if (!t->is_object()) throw ApiError(400, "'text' must be an object", "text");
    if (t->contains("format") && !(*t)["format"].is_null()) {
      const ojson& f = (*t)["format"];
      if (!f.is_object()) throw ApiError(400, "'text.format' must be an object", "text.format");
      const std::string type = get_string(f, "type", "text", "text.format");
      o["response_format"] = {{"type", type}};
      if (type == "json_schema") {  // flat here, nested in chat completions
        ojson js = {{"name", get_string(f, "name", "response", "text.format")}};
        if (f.contains("schema")) js["schema"] = f["schema"];
        if (f.contains("strict")) js["strict"] = f["strict"];
        o["response_format"]["json_schema"] = js;
      }
    }
  }
  ojson msgs = ojson::array();
  if (b.contains("instructions") && !b["instructions"].is_null()) {
    if (!b["instructions"].is_string()) throw ApiError(400, "'instructions' must be a string", "instructions");
    msgs.push_back({{"role", "system"}, {"content", b["instructions"]}});
  }
  auto in = b.find("input");
  if (in == b.end() || in->is_null()) throw ApiError(400, "'input' is required", "input");
  if (in->is_string()) {
    msgs.push_back({{"role", "user"}, {"content", *in}});
  } else if (in->is_array()) {
    // An assistant turn collects its reasoning, text and function calls until the next other item.
    ojson turn;
    auto flush = [&] {
      if (turn.is_null()) return;
      if (turn.contains("tool_calls") && turn["content"] == "") turn["content"] = nullptr;
      msgs.push_back(turn);
      turn = ojson();
    };
    auto assistant = [&]() -> ojson& {
      if (turn.is_null()) turn = {{"role", "assistant"}, {"content", ""}};
      return turn;
    };
    for (size_t i = 0; i < in->size(); ++i) {
      const ojson& it = (*in)[i];
      const std::string at = "input[" + std::to_string(i) + "]";
      if (!it.is_object()) throw ApiError(400, "'" + at + "' must be an object", at);
      const std::string type = get_string(it, "type", it.contains("role") ? "message" : "", at);
      if (type == "message") {
        const std::string role = get_string(it, "role", "", at);
        const std::string text = content_text(it.contains("content") ? it["content"] : ojson(), at + ".content");
        if (role == "assistant") {
          assistant()["content"] = assistant()["content"].get<std::string>() + text;
        } else if (role == "user" || role == "system" || role == "developer") {
          flush();
          msgs.push_back({{"role", role == "developer" ? "system" : role}, {"content", text}});
        } else {
          throw ApiError(400, "'" + at + ".role' must be user, assistant, system or developer", at + ".role");
        }
      } else if (type == "reasoning") {
        std::string text;
        for (const char* key : {"content", "summary"})
          if (it.contains(key) && it[key].is_array() && text.empty())
            for (const auto& p : it[key])
              if (p.is_object() && p.contains("text") && p["text"].is_string()) text += p["text"].get<std::string>();
        ojson& a = assistant();
        a["reasoning_content"] = a.value("reasoning_content", std::string()) + text;
      } else if (type == "function_call") {
        ojson& a = assistant();
        if (!a.contains("tool_calls")) a["tool_calls"] = ojson::array();
        a["tool_calls"].push_back({{"id", get_string(it, "call_id", "", at)},
                                   {"type", "function"},
                                   {"function", {{"name", get_string(it, "name", "", at)}, {"arguments", get_string(it, "arguments", "{}", at)}}}});
      } else if (type == "function_call_output") {
        flush();
        const ojson& out = it.contains("output") ? it["output"] : ojson("");
        msgs.push_back({{"role", "tool"}, {"tool_call_id", get_string(it, "call_id", "", at)},
                        {"content", out.is_string() ? out.get<std::string>() : content_text(out, at + ".output")}});
      } else {
        throw ApiError(400, "'" + at + "': input items of type '" + type +
                                "' are not supported (message, reasoning, function_call, function_call_output)",
                       at + ".type");
      }
    }
    flush();
  } else {
    throw ApiError(400, "'input' must be a string or an array of input items", "input");
  }
  o["messages"] = msgs;
  if (b.contains("tools") && !b["tools"].is_null())
    o["tools"] = flat_tools(b["tools"], "function", "", "parameters", "(OpenAI's hosted tools) are not supported; declare a function");
  if (b.contains("tool_choice") && !b["tool_choice"].is_null()) {
    const ojson& tc = b["tool_choice"];
    if (tc.is_object() && tc.value("type", "") == "function") o["tool_choice"] = {{"type", "function"}, {"function", {{"name", tc.value("name", "")}}}};
    else o["tool_choice"] = tc;
  }
  return o;
}

std::string event(const ojson& data) {
  return "event: " + data["type"].get<std::string>() + "\ndata: " + data.dump(-1, ' ', false, ojson::error_handler_t::replace) + "\n\n";
}

ojson usage_of(const GenerationStats& s) {
  return {{"input_tokens", s.prompt_tokens},
          {"input_tokens_details", {{"cached_tokens", s.cached_tokens}}},
          {"output_tokens", s.generated_tokens},
          {"output_tokens_details", {{"reasoning_tokens", s.reasoning_tokens}}},
          {"total_tokens", s.prompt_tokens + s.generated_tokens}};
}

// The fields every response object carries, echoing the request.
ojson response_shell(const std::string& id, int64_t created, const ServedModel& m, const ojson& b) {
  return {{"id", id},
          {"object", "response"},
          {"created_at", created},
          {"status", "in_progress"},
          {"error", nullptr},
          {"incomplete_details", nullptr},
          {"instructions", b.contains("instructions") ? b["instructions"] : ojson(nullptr)},
          {"max_output_tokens", b.contains("max_output_tokens") ? b["max_output_tokens"] : ojson(nullptr)},
          {"model", m.id},
          {"output", ojson::array()},
          {"parallel_tool_calls", b.value("parallel_tool_calls", true)},
          {"previous_response_id", nullptr},
          {"reasoning", b.contains("reasoning") ? b["reasoning"] : ojson({{"effort", nullptr}, {"summary", nullptr}})},
          {"store", false},
          {"temperature", b.contains("temperature") ? b["temperature"] : ojson(1.0)},
          {"text", b.contains("text") ? b["text"] : ojson({{"format", {{"type", "text"}}}})},
          {"tool_choice", b.contains("tool_choice") ? b["tool_choice"] : ojson("auto")},
          {"tools", b.contains("tools") ? b["tools"] : ojson::array()},
          {"top_p", b.contains("top_p") ? b["top_p"] : ojson(1.0)},
          {"truncation", "disabled"},
          {"usage", nullptr},
          {"metadata", b.contains("metadata") ? b["metadata"] : ojson::object()}};
}

void finish_shell(ojson& res, const RequestOutput& out) {
  const bool length = out.stats.finish_reason == "length";
  res["status"] = length ? "incomplete" : "completed";
  if (length) res["incomplete_details"] = {{"reason", "max_output_tokens"}};
  res["usage"] = usage_of(out.stats);
}

ojson reasoning_item(const std::string& id, const std::string& text) {
  return {{"type", "reasoning"}, {"id", id}, {"summary", ojson::array()},
          {"content", ojson::array({{{"type", "reasoning_text"}, {"text", text}}})}};
}
ojson message_item(const std::string& id, const std::string& text, const char* status) {
  return {{"type", "message"}, {"id", id}, {"status", status}, {"role", "assistant"},
          {"content", ojson::array({{{"type", "output_text"}, {"text", text}, {"annotations", ojson::array()}}})}};
}
ojson call_item(const std::string& id, const std::string& call_id, const std::string& name, const std::string& args, const char* status) {
  return {{"type", "function_call"}, {"id", id}, {"call_id", call_id}, {"name", name}, {"arguments", args}, {"status", status}};
}

}  // namespace

Reply openai_responses(const ojson& body, const ServedModel& m) {
  Job job = parse_openai_chat(to_chat(body), m);
  start(job, m);
  const std::string id = random_id("resp_");
  const int64_t created = unix_time();
  Reply reply;
  if (!job.stream) {
    reply.stream = [job, id, created, body, &m](const std::function<bool(std::string_view)>& write) mutable {
      RequestOutput fin;
      Heartbeat alive(write, " ");
      if (!drive(job, [&](size_t, const RequestOutput& out) {
            if (out.finished) fin = out;
            return true;
          }, std::ref(alive)))
        return;
      if (!fin.error.empty()) {
        write(ApiError(500, "generation failed: " + fin.error).body().dump());
        return;
      }
      ojson res = response_shell(id, created, m, body);
      const ParsedOutput& r = fin.result;
      if (!r.reasoning.empty()) res["output"].push_back(reasoning_item(random_id("rs_"), r.reasoning));
      if (!r.content.empty() || r.tool_calls.empty()) res["output"].push_back(message_item(random_id("msg_"), r.content, "completed"));
      for (const ParsedToolCall& c : r.tool_calls)
        res["output"].push_back(call_item(random_id("fc_"), random_id("call_"), c.name, c.arguments, "completed"));
      finish_shell(res, fin);
      write(res.dump(-1, ' ', false, ojson::error_handler_t::replace));
    };
    return reply;
  }

  reply.content_type = "text/event-stream";
  reply.stream = [job, id, created, body, &m](const std::function<bool(std::string_view)>& write) mutable {
    int64_t seq = 0;
    auto send = [&](ojson e) {
      e["sequence_number"] = seq++;
      return write(event(e));
    };
    ojson res = response_shell(id, created, m, body);
    if (!send({{"type", "response.created"}, {"response", res}}) || !send({{"type", "response.in_progress"}, {"response", res}})) return;
    // The item being written: its kind ("reasoning", "message", "function_call"), index and text.
    std::string kind, item_id, call_id, name, text;
    int index = -1;
    auto close = [&]() {
      if (kind.empty()) return true;
      ojson item;
      bool ok = true;
      if (kind == "reasoning") {
        item = reasoning_item(item_id, text);
        ok = send({{"type", "response.reasoning_text.done"}, {"item_id", item_id}, {"output_index", index}, {"content_index", 0}, {"text", text}});
      } else if (kind == "message") {
        item = message_item(item_id, text, "completed");
        const ojson part = item["content"][0];
        ok = send({{"type", "response.output_text.done"}, {"item_id", item_id}, {"output_index", index}, {"content_index", 0}, {"text", text}, {"logprobs", ojson::array()}}) &&
             send({{"type", "response.content_part.done"}, {"item_id", item_id}, {"output_index", index}, {"content_index", 0}, {"part", part}});
      } else {
        item = call_item(item_id, call_id, name, text, "completed");
        ok = send({{"type", "response.function_call_arguments.done"}, {"item_id", item_id}, {"output_index", index}, {"arguments", text}});
      }
      res["output"].push_back(item);
      kind.clear();
      return ok && send({{"type", "response.output_item.done"}, {"output_index", index}, {"item", item}});
    };
    auto open = [&](const std::string& k, const std::string& fn = "") {
      if (!close()) return false;
      kind = k, text.clear(), ++index;
      item_id = random_id(k == "reasoning" ? "rs_" : k == "message" ? "msg_" : "fc_");
      ojson item;
      if (k == "reasoning") {
        item = {{"type", "reasoning"}, {"id", item_id}, {"summary", ojson::array()}, {"content", ojson::array()}};
      } else if (k == "message") {
        item = {{"type", "message"}, {"id", item_id}, {"status", "in_progress"}, {"role", "assistant"}, {"content", ojson::array()}};
      } else {
        call_id = random_id("call_"), name = fn;
        item = call_item(item_id, call_id, name, "", "in_progress");
      }
      if (!send({{"type", "response.output_item.added"}, {"output_index", index}, {"item", item}})) return false;
      if (k == "message")
        return send({{"type", "response.content_part.added"}, {"item_id", item_id}, {"output_index", index}, {"content_index", 0},
                     {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", ojson::array()}}}});
      if (k == "reasoning")
        return send({{"type", "response.content_part.added"}, {"item_id", item_id}, {"output_index", index}, {"content_index", 0},
                     {"part", {{"type", "reasoning_text"}, {"text", ""}}}});
      return true;
    };
    Heartbeat alive(write, ": keep-alive\n\n");
    drive(job, [&](size_t, const RequestOutput& out) {
      alive.wrote();
      for (const ParseEvent& e : out.events) {
        bool ok = true;
        switch (e.kind) {
          case ParseEvent::Reasoning:
            ok = (kind == "reasoning" || open("reasoning")) &&
                 send({{"type", "response.reasoning_text.delta"}, {"item_id", item_id}, {"output_index", index}, {"content_index", 0}, {"delta", e.text}});
            break;
          case ParseEvent::Content:
            ok = (kind == "message" || open("message")) &&
                 send({{"type", "response.output_text.delta"}, {"item_id", item_id}, {"output_index", index}, {"content_index", 0}, {"delta", e.text}, {"logprobs", ojson::array()}});
            break;
          case ParseEvent::ToolCallStart: ok = open("function_call", e.text); break;
          case ParseEvent::ToolCallArguments:
            ok = send({{"type", "response.function_call_arguments.delta"}, {"item_id", item_id}, {"output_index", index}, {"delta", e.text}});
            break;
        }
        if (e.kind != ParseEvent::ToolCallStart) text += e.text;
        if (!ok) return false;
      }
      if (!out.finished) return true;
      if (!out.error.empty()) {
        res["status"] = "failed";
        res["error"] = {{"code", "server_error"}, {"message", "generation failed: " + out.error}};
        return send({{"type", "response.failed"}, {"response", res}});
      }
      if (index < 0 && !open("message")) return false;  // a response always has an output item
      if (!close()) return false;
      finish_shell(res, out);
      return send({{"type", res["status"] == "completed" ? "response.completed" : "response.incomplete"}, {"response", res}});
    }, std::ref(alive));
  };
  return reply;
}

}  // namespace whale
