// OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models.
// Reasoning goes to `reasoning_content` (DeepSeek's name; mirrored as `reasoning` with
// --reasoning-mirror); tool-call arguments are JSON strings; streams are SSE chunks with the
// same id/created, ending with an optional usage chunk and `data: [DONE]`.
#include <random>

#include "core/error.h"
#include "server/api.h"

namespace whale {

using namespace api;

namespace {

// Sampling fields shared by chat and completions.
void parse_sampling(const ojson& b, EngineRequest& r) {
  SamplingParams& s = r.options.sampling;
  s.temperature = float(get_number(b, "temperature", 1.0, 0.0, 2.0));
  s.top_p = float(get_number(b, "top_p", 1.0, 0.0, 1.0));
  s.top_k = int32_t(get_int(b, "top_k", 0, -1, 1 << 30));
  if (s.top_k < 0) s.top_k = 0;
  s.min_p = float(get_number(b, "min_p", 0.0, 0.0, 1.0));
  s.presence_penalty = float(get_number(b, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = float(get_number(b, "frequency_penalty", 0.0, -2.0, 2.0));
  s.repetition_penalty = float(get_number(b, "repetition_penalty", 1.0, 0.01, 10.0));
  s.seed = uint64_t(get_int(b, "seed", int64_t(std::random_device{}() & 0x7fffffff), INT64_MIN, INT64_MAX));
  if (auto lb = b.find("logit_bias"); lb != b.end() && !lb->is_null()) {
    if (!lb->is_object()) throw ApiError(400, "'logit_bias' must be an object of token id -> bias", "logit_bias");
    for (const auto& [k, v] : lb->items()) {
      char* end = nullptr;
      const long id = std::strtol(k.c_str(), &end, 10);
      if (k.empty() || *end || id < 0 || id > INT32_MAX) throw ApiError(400, "logit_bias keys must be token ids", "logit_bias");
      if (!v.is_number() || v.get<double>() < -100 || v.get<double>() > 100)
        throw ApiError(400, "logit_bias values must be numbers in [-100, 100]", "logit_bias");
      s.logit_bias.emplace_back(int32_t(id), float(v.get<double>()));
    }
  }
  r.options.stop = get_stop(b, "stop");
}

// n copies of a request, seeds spread so the choices differ.
void replicate(Job& job, EngineRequest r, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    job.requests.push_back(r);
    job.requests.back().options.sampling.seed = r.options.sampling.seed + uint64_t(i);
  }
}

// R1 always thinks; V4 thinks by default (as DeepSeek's API serves it, effort high); the
// others answer directly unless asked.
bool default_thinking(ChatFormat f) { return f == ChatFormat::R1 || f == ChatFormat::V4; }

// DeepSeek's `thinking: {type}`, `chat_template_kwargs: {thinking | enable_thinking}` and
// OpenAI's `reasoning_effort` all toggle the thinking mode; R1 always thinks, V3 never. For V4
// `reasoning_effort` max and xhigh select the maximum effort (DeepSeek's API maps xhigh to max,
// lower levels to high).
bool resolve_thinking(const ojson& b, ChatFormat f, int64_t& budget, std::string& effort) {
  bool thinking = default_thinking(f);
  if (auto it = b.find("reasoning_effort"); it != b.end() && !it->is_null()) {
    if (!it->is_string()) throw ApiError(400, "'reasoning_effort' must be a string", "reasoning_effort");
    const std::string e = it->get<std::string>();
    if (e == "none") thinking = false;
    else if (e == "minimal" || e == "low" || e == "medium" || e == "high" || e == "xhigh" || e == "max") thinking = true;
    else throw ApiError(400, "'reasoning_effort' must be none, minimal, low, medium, high, xhigh or max", "reasoning_effort");
    if (f == ChatFormat::V4 && (e == "max" || e == "xhigh")) effort = "max";
  }
  if (auto it = b.find("chat_template_kwargs"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) throw ApiError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs");
    for (const char* k : {"thinking", "enable_thinking"})
      if (it->contains(k)) thinking = get_bool(*it, k, thinking, "chat_template_kwargs");
  }
  if (auto it = b.find("thinking"); it != b.end() && !it->is_null()) {
    if (it->is_boolean()) {
      thinking = it->get<bool>();
    } else if (it->is_object()) {
      const std::string type = get_string(*it, "type", "enabled", "thinking");
      if (type != "enabled" && type != "disabled") throw ApiError(400, "'thinking.type' must be \"enabled\" or \"disabled\"", "thinking.type");
      thinking = type == "enabled";
      budget = get_int(*it, "budget_tokens", budget, 0, INT32_MAX, "thinking");
    } else {
      throw ApiError(400, "'thinking' must be an object {\"type\": \"enabled\"|\"disabled\"}", "thinking");
    }
  }
  budget = get_int(b, "thinking_budget", budget, -1, INT32_MAX);
  if (f == ChatFormat::R1) thinking = true;  // its template always opens a think block
  if (f == ChatFormat::V3) thinking = false;  // no thinking mode
  return thinking;
}

std::string sse(const ojson& j) { return "data: " + j.dump(-1, ' ', false, ojson::error_handler_t::replace) + "\n\n"; }

ojson usage_json(const std::vector<GenerationStats>& stats, const Price& price) {
  int64_t prompt = 0, cached = 0, completion = 0, reasoning = 0;
  for (size_t i = 0; i < stats.size(); ++i) {
    if (i == 0) {  // the prompt is counted once, as OpenAI does for n > 1
      prompt = stats[i].prompt_tokens;
      cached = stats[i].cached_tokens;
    }
    completion += stats[i].generated_tokens;
    reasoning += stats[i].reasoning_tokens;
  }
  ojson u = {{"prompt_tokens", prompt},
             {"completion_tokens", completion},
             {"total_tokens", prompt + completion},
             {"prompt_tokens_details", {{"cached_tokens", cached}}},
             {"completion_tokens_details", {{"reasoning_tokens", reasoning}}},
             {"prompt_cache_hit_tokens", cached},
             {"prompt_cache_miss_tokens", prompt - cached}};
  if (!stats.empty()) u["prompt_cache_hit_tokens_by_tier"] = cache_tiers(stats[0]);
  if (price.set) u["cost"] = cost_json(price, cached, prompt - cached, completion);
  return u;
}

std::string finish_reason(const RequestOutput& out) {
  const std::string& r = out.stats.finish_reason;
  if (!out.error.empty()) return "error";
  if (r == "stop" && !out.result.tool_calls.empty()) return "tool_calls";
  return r == "cancelled" ? "stop" : r;
}

ojson chat_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps) {
  ojson content = ojson::array();
  for (const auto& lp : lps) {
    ojson top = ojson::array();
    for (const auto& [id, l] : lp.top)
      top.push_back({{"token", token_text(tok, id)}, {"logprob", l}, {"bytes", token_bytes_json(tok, id)}});
    content.push_back({{"token", token_text(tok, lp.id)}, {"logprob", lp.logprob}, {"bytes", token_bytes_json(tok, lp.id)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

ojson tool_calls_json(const std::vector<ParsedToolCall>& calls, const std::vector<std::string>& ids) {
  ojson a = ojson::array();
  for (size_t i = 0; i < calls.size(); ++i)
    a.push_back({{"id", ids[i]}, {"type", "function"}, {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}});
  return a;
}

}  // namespace

Job parse_openai_chat(const ojson& b, const ServedModel& m) {
  check_model(b, m, false);
  auto msgs = b.find("messages");
  if (msgs == b.end() || !msgs->is_array()) throw ApiError(400, "'messages' must be an array of messages", "messages");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < msgs->size(); ++i) {
    try {
      messages.push_back(ChatMessage::from_json((*msgs)[i], "messages[" + std::to_string(i) + "]"));
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages[" + std::to_string(i) + "]");
    }
  }
  ojson tools = get_tools(b);
  // tool_choice: "none" hides the tools, "auto" lets the model choose, "required" or a named
  // function forces the answer to open with a call.
  std::string forced_tool;
  bool require_tool = false;
  if (auto tc = b.find("tool_choice"); tc != b.end() && !tc->is_null()) {
    if (tc->is_string()) {
      const std::string c = tc->get<std::string>();
      if (c == "none") tools = ojson::array();
      else if (c == "required") require_tool = true;
      else if (c != "auto") throw ApiError(400, "'tool_choice' must be none, auto, required or a function", "tool_choice");
    } else if (tc->is_object()) {
      const ojson* f = tc->contains("function") ? &(*tc)["function"] : nullptr;
      if (!f || !f->is_object() || !f->contains("name") || !(*f)["name"].is_string())
        throw ApiError(400, "'tool_choice' must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice");
      forced_tool = (*f)["name"].get<std::string>();
      bool known = false;
      for (const auto& t : tools) known |= t["function"]["name"] == forced_tool;
      if (!known) throw ApiError(400, "'tool_choice' names '" + forced_tool + "', which is not in 'tools'", "tool_choice");
      require_tool = true;
    } else {
      throw ApiError(400, "'tool_choice' must be a string or an object", "tool_choice");
    }
    if (require_tool && tools.empty()) throw ApiError(400, "'tool_choice' requires 'tools'", "tool_choice");
  }
  // response_format: json_object → any object; json_schema → a value valid under the schema
  // (enforced whether or not `strict` is set).
  std::shared_ptr<const JsonGrammar> json_grammar;
  if (auto rf = b.find("response_format"); rf != b.end() && !rf->is_null()) {
    if (!rf->is_object()) throw ApiError(400, "'response_format' must be an object", "response_format");
    const std::string type = get_string(*rf, "type", "text", "response_format");
    if (type == "json_object") {
      json_grammar = JsonGrammar::any_object();
    } else if (type == "json_schema") {
      auto js = rf->find("json_schema");
      if (js == rf->end() || !js->is_object())
        throw ApiError(400, "'response_format.json_schema' must be an object {\"name\": ..., \"schema\": {...}}", "response_format.json_schema");
      auto schema = js->find("schema");
      json_grammar = schema == js->end() || schema->is_null() ? JsonGrammar::any_object()
                                                             : schema_grammar(*schema, "response_format.json_schema.schema");
    } else if (type != "text") {
      throw ApiError(400, "'response_format.type' must be text, json_object or json_schema", "response_format.type");
    }
  }
  int64_t budget = -1;
  Job job;
  job.thinking = resolve_thinking(b, m.format, budget, job.effort);
  job.stream = get_bool(b, "stream", false);
  if (auto so = b.find("stream_options"); so != b.end() && !so->is_null()) {
    if (!so->is_object()) throw ApiError(400, "'stream_options' must be an object", "stream_options");
    job.include_usage = get_bool(*so, "include_usage", false, "stream_options");
  }
  job.logprobs = get_bool(b, "logprobs", false);
  const int64_t top = get_int(b, "top_logprobs", 0, 0, 20);
  if (b.contains("top_logprobs") && !b["top_logprobs"].is_null() && !job.logprobs)
    throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
  const int64_t n = get_int(b, "n", 1, 1, 16);

  EngineRequest r = chat_request(m, std::move(messages), tools, job.thinking, job.effort);
  parse_sampling(b, r);
  int64_t max_tokens = get_int(b, "max_tokens", m.ctx, 1, INT32_MAX);
  max_tokens = get_int(b, "max_completion_tokens", max_tokens, 1, INT32_MAX);
  r.options.max_tokens = max_tokens;
  r.options.thinking_budget = job.thinking ? budget : -1;
  r.top_logprobs = job.logprobs ? int32_t(top) : -1;
  r.json = json_grammar;
  if (require_tool) {  // the name among the declared tools, the arguments valid under its parameters (decode_state.h)
    std::vector<std::string> names;
    for (size_t i = 0; i < tools.size(); ++i) {
      const ojson& f = tools[i]["function"];
      const std::string name = f["name"].get<std::string>();
      if (!forced_tool.empty() && name != forced_tool) continue;
      names.push_back(name);
      const std::string where = "tools[" + std::to_string(i) + "].function.parameters";
      r.tool_call_arguments.push_back(f.contains("parameters") && !f["parameters"].is_null() ? schema_grammar(f["parameters"], where)
                                                                                               : JsonGrammar::any_object());
    }
    r.tool_call = forced_tool_call(m.format, std::move(names));
  }
  replicate(job, std::move(r), n);
  return job;
}

Job parse_openai_completion(const ojson& b, const ServedModel& m) {
  check_model(b, m, false);
  auto p = b.find("prompt");
  if (p == b.end() || p->is_null()) throw ApiError(400, "missing required field 'prompt'", "prompt");
  if (b.contains("suffix") && !b["suffix"].is_null()) throw ApiError(400, "'suffix' (fill-in-the-middle) is not supported", "suffix");
  EngineRequest r;
  std::string prompt_text;
  if (p->is_string()) {
    prompt_text = p->get<std::string>();
    r.prompt = m.tokenizer->encode(prompt_text, m.tokenizer->add_bos_default());
  } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    prompt_text = (*p)[0].get<std::string>();
    r.prompt = m.tokenizer->encode(prompt_text, m.tokenizer->add_bos_default());
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    for (const auto& t : *p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= m.config->vocab_size)
        throw ApiError(400, "'prompt' token ids must be integers in [0, vocab_size)", "prompt");
      r.prompt.push_back(int32_t(t.get<int64_t>()));
    }
  } else {
    throw ApiError(400, "'prompt' must be a string, an array of one string, or an array of token ids", "prompt");
  }
  check_context(m, r.prompt.size(), "prompt");
  Job job;
  job.raw = true;
  job.stream = get_bool(b, "stream", false);
  if (auto so = b.find("stream_options"); so != b.end() && so->is_object())
    job.include_usage = get_bool(*so, "include_usage", false, "stream_options");
  const int64_t lp = get_int(b, "logprobs", -1, 0, 20);
  job.logprobs = lp >= 0;
  if (get_bool(b, "echo", false)) {
    // OpenAI's echo with logprobs also scores the prompt's tokens, which whale does not compute.
    if (job.logprobs) throw ApiError(400, "'echo' together with 'logprobs' (prompt token logprobs) is not supported", "echo");
    const bool ids = p->is_array() && !(*p)[0].is_string();
    job.echo = ids ? m.tokenizer->decode(r.prompt) : prompt_text;
  }
  parse_sampling(b, r);
  r.options.max_tokens = get_int(b, "max_tokens", 16, 1, INT32_MAX);
  r.top_logprobs = int32_t(lp);
  r.parse = false;
  replicate(job, std::move(r), get_int(b, "n", 1, 1, 16));
  return job;
}

Reply openai_chat(const ojson& body, const ServedModel& m) {
  Job job = parse_openai_chat(body, m);
  start(job, m);
  const std::string id = random_id("chatcmpl-");
  const int64_t created = unix_time();
  const size_t n = job.submitted->handles.size();
  Reply reply;
  if (!job.stream) {
    reply.stream = [job, id, created, n, &m](const std::function<bool(std::string_view)>& write) mutable {
      std::vector<RequestOutput> finals(n);
      std::vector<std::vector<TokenLogprob>> lps(n);
      Heartbeat alive(write, " ");  // leading whitespace is valid JSON
      const bool ok = drive(job, [&](size_t i, const RequestOutput& out) {
        lps[i].insert(lps[i].end(), out.logprobs.begin(), out.logprobs.end());
        if (out.finished) finals[i] = out;
        return true;
      }, std::ref(alive));
      if (!ok) return;
      ojson choices = ojson::array();
      std::vector<GenerationStats> stats;
      for (size_t i = 0; i < n; ++i) {
        const auto& r = finals[i].result;
        std::vector<std::string> ids;
        for (size_t k = 0; k < r.tool_calls.size(); ++k) ids.push_back(random_id("call_"));
        ojson msg = {{"role", "assistant"},
                     {"content", r.content.empty() && !r.tool_calls.empty() ? ojson(nullptr) : ojson(r.content)}};
        if (job.thinking || !r.reasoning.empty()) {
          msg["reasoning_content"] = r.reasoning;
          if (m.mirror_reasoning) msg["reasoning"] = r.reasoning;
        }
        if (!r.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(r.tool_calls, ids);
        choices.push_back({{"index", i},
                           {"message", msg},
                           {"logprobs", job.logprobs ? chat_logprobs(*m.tokenizer, lps[i]) : ojson(nullptr)},
                           {"finish_reason", finish_reason(finals[i])}});
        stats.push_back(finals[i].stats);
      }
      ojson res = {{"id", id},      {"object", "chat.completion"}, {"created", created},
                   {"model", m.id}, {"choices", choices},          {"usage", usage_json(stats, m.price)},
                   {"system_fingerprint", "whale"}, {"timings", timings(stats[0])}};
      write(res.dump(-1, ' ', false, ojson::error_handler_t::replace));
    };
    return reply;
  }

  reply.content_type = "text/event-stream";
  reply.stream = [job, id, created, n, &m](const std::function<bool(std::string_view)>& write) mutable {
    auto chunk = [&](size_t i, ojson delta, const ojson& finish, const ojson& logprobs = nullptr) {
      ojson c = {{"index", i}, {"delta", std::move(delta)}, {"logprobs", logprobs}, {"finish_reason", finish}};
      return ojson{{"id", id},      {"object", "chat.completion.chunk"}, {"created", created},
                   {"model", m.id}, {"system_fingerprint", "whale"},     {"choices", ojson::array({c})}};
    };
    for (size_t i = 0; i < n; ++i)
      if (!write(sse(chunk(i, {{"role", "assistant"}, {"content", ""}}, nullptr)))) return;
    std::vector<GenerationStats> stats(n);
    std::vector<std::vector<std::string>> call_ids(n);
    Heartbeat alive(write, ": ping\n\n");  // an SSE comment
    const bool ok = drive(job, [&](size_t i, const RequestOutput& out) {
      alive.wrote();
      ojson lp = job.logprobs && !out.logprobs.empty() ? chat_logprobs(*m.tokenizer, out.logprobs) : ojson(nullptr);
      bool lp_sent = lp.is_null();
      for (const auto& e : out.events) {
        ojson delta;
        switch (e.kind) {
          case ParseEvent::Reasoning:
            delta["reasoning_content"] = e.text;
            if (m.mirror_reasoning) delta["reasoning"] = e.text;
            break;
          case ParseEvent::Content: delta["content"] = e.text; break;
          case ParseEvent::ToolCallStart:
            call_ids[i].push_back(random_id("call_"));
            delta["tool_calls"] = ojson::array({{{"index", e.tool_index}, {"id", call_ids[i].back()}, {"type", "function"},
                                                 {"function", {{"name", e.text}, {"arguments", ""}}}}});
            break;
          case ParseEvent::ToolCallArguments:
            delta["tool_calls"] = ojson::array({{{"index", e.tool_index}, {"function", {{"arguments", e.text}}}}});
            break;
        }
        if (!write(sse(chunk(i, delta, nullptr, lp_sent ? ojson(nullptr) : lp)))) return false;
        lp_sent = true;
      }
      if (!lp_sent && !write(sse(chunk(i, ojson::object(), nullptr, lp)))) return false;
      if (out.finished) {
        stats[i] = out.stats;
        if (!out.error.empty()) {
          ApiError err(500, "generation failed: " + out.error);
          return write(sse(err.body()));
        }
        ojson last = chunk(i, ojson::object(), finish_reason(out));
        last["timings"] = timings(out.stats);
        return write(sse(last));
      }
      return true;
    }, std::ref(alive));
    if (!ok) return;
    if (job.include_usage) {
      ojson u = {{"id", id},      {"object", "chat.completion.chunk"}, {"created", created},
                 {"model", m.id}, {"system_fingerprint", "whale"},     {"choices", ojson::array()},
                 {"usage", usage_json(stats, m.price)}};
      if (!write(sse(u))) return;
    }
    write("data: [DONE]\n\n");
  };
  return reply;
}

Reply openai_completion(const ojson& body, const ServedModel& m) {
  Job job = parse_openai_completion(body, m);
  start(job, m);
  const std::string id = random_id("cmpl-");
  const int64_t created = unix_time();
  const size_t n = job.submitted->handles.size();
  auto logprobs_json = [&m](const std::vector<TokenLogprob>& lps, size_t offset) {
    ojson tokens = ojson::array(), lp = ojson::array(), top = ojson::array(), off = ojson::array();
    for (const auto& x : lps) {
      const std::string t = token_text(*m.tokenizer, x.id);
      tokens.push_back(t);
      lp.push_back(x.logprob);
      ojson alt = ojson::object();
      for (const auto& [tid, l] : x.top) alt[token_text(*m.tokenizer, tid)] = l;
      top.push_back(alt);
      off.push_back(offset);
      offset += t.size();
    }
    return ojson{{"tokens", tokens}, {"token_logprobs", lp}, {"top_logprobs", top}, {"text_offset", off}};
  };
  Reply reply;
  if (job.stream) reply.content_type = "text/event-stream";
  reply.stream = [job, id, created, n, &m, logprobs_json](const std::function<bool(std::string_view)>& write) mutable {
    std::vector<std::string> text(n);
    std::vector<std::vector<TokenLogprob>> lps(n);
    std::vector<RequestOutput> finals(n);
    auto make = [&](ojson choices, const ojson& usage) {
      ojson c = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", m.id}, {"choices", choices}};
      if (!usage.is_null()) c["usage"] = usage;
      return c;
    };
    Heartbeat alive(write, job.stream ? ": ping\n\n" : " ");
    std::vector<bool> echoed(n, job.echo.empty());
    const bool ok = drive(job, [&](size_t i, const RequestOutput& out) {
      std::string delta = echoed[i] ? "" : job.echo;  // echo: the prompt leads the first piece
      echoed[i] = true;
      for (const auto& e : out.events) delta += e.text;
      if (job.stream) {
        alive.wrote();
        ojson c = {{"text", delta}, {"index", i},
                   {"logprobs", job.logprobs ? logprobs_json(out.logprobs, text[i].size()) : ojson(nullptr)},
                   {"finish_reason", out.finished ? ojson(out.stats.finish_reason == "cancelled" ? "stop" : out.stats.finish_reason) : ojson(nullptr)}};
        if (!write(sse(make(ojson::array({c}), nullptr)))) return false;
      }
      text[i] += delta;
      lps[i].insert(lps[i].end(), out.logprobs.begin(), out.logprobs.end());
      if (out.finished) finals[i] = out;
      return true;
    }, std::ref(alive));
    if (!ok) return;
    std::vector<GenerationStats> stats;
    for (auto& f : finals) stats.push_back(f.stats);
    if (job.stream) {
      if (job.include_usage && !write(sse(make(ojson::array(), usage_json(stats, m.price))))) return;
      write("data: [DONE]\n\n");
      return;
    }
    ojson choices = ojson::array();
    for (size_t i = 0; i < n; ++i)
      choices.push_back({{"text", text[i]}, {"index", i},
                         {"logprobs", job.logprobs ? logprobs_json(lps[i], 0) : ojson(nullptr)},
                         {"finish_reason", finals[i].stats.finish_reason == "cancelled" ? "stop" : finals[i].stats.finish_reason}});
    ojson res = make(choices, usage_json(stats, m.price));
    res["timings"] = timings(stats[0]);
    write(res.dump(-1, ' ', false, ojson::error_handler_t::replace));
  };
  return reply;
}

Reply openai_models(const ServedModel& m) {
  Reply r;
  ojson model = {{"id", m.id}, {"object", "model"}, {"created", m.created}, {"owned_by", "whale"},
                 {"meta", {{"n_ctx", m.ctx}, {"chat_format", chat_format_name(m.format)}, {"path", m.path}}}};
  r.body = ojson{{"object", "list"}, {"data", ojson::array({model})}}.dump();
  return r;
}

}  // namespace whale
