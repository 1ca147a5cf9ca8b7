// Pieces every endpoint shares: typed field access with 400s that name the field, the
// conversation -> prompt step (tools, thinking mode), and the loop that drives a job's
// engine requests while watching the client.
#include <chrono>
#include <ctime>
#include <random>
#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "server/api.h"
#include "tokenizer/utf8.h"

namespace whale {

ApiError::ApiError(int status_, std::string message, std::string param_, std::string type_, std::string code_)
    : std::runtime_error(std::move(message)), status(status_), type(std::move(type_)), param(std::move(param_)),
      code(std::move(code_)) {
  if (type.empty())
    type = status == 401 ? "authentication_error"
           : status == 404 ? "not_found_error"
           : status == 503 ? "unavailable_error"
           : status >= 500 ? "server_error"
                           : "invalid_request_error";
}

ojson ApiError::body() const {
  ojson e = {{"message", what()}, {"type", type}, {"param", param.empty() ? ojson(nullptr) : ojson(param)},
             {"code", code.empty() ? ojson(nullptr) : ojson(code)}};  // a string or null, as OpenAI's
  return {{"error", e}};
}

ojson parse_json_body(std::string_view body) {
  ojson j = ojson::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

Submitted::~Submitted() {
  for (auto& h : handles) h->cancel();  // a no-op for finished requests
}

namespace api {

namespace {
std::string field(const std::string& where, const char* key) { return where.empty() ? key : where + "." + key; }
const ojson* find(const ojson& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}
}  // namespace

void check_model(const ojson& body, const ServedModel& m, bool required) {
  const ojson* v = find(body, "model");
  if (!v) {
    if (required) throw ApiError(400, "missing required field 'model'", "model");
    return;
  }
  if (!v->is_string()) throw ApiError(400, "'model' must be a string", "model");
  const std::string name = v->get<std::string>();
  // Ollama-style tags (":latest") and the path it was loaded from name the same model.
  if (!m.names(name))
    throw ApiError(404, "the model '" + name + "' does not exist; this server serves '" + m.id + "'", "model", "",
                   "model_not_found");
}

bool get_bool(const ojson& o, const char* key, bool fallback, const std::string& where) {
  const ojson* v = find(o, key);
  if (!v) return fallback;
  if (!v->is_boolean()) throw ApiError(400, "'" + field(where, key) + "' must be a boolean", field(where, key));
  return v->get<bool>();
}

double get_number(const ojson& o, const char* key, double fallback, double lo, double hi, const std::string& where) {
  const ojson* v = find(o, key);
  if (!v) return fallback;
  if (!v->is_number()) throw ApiError(400, "'" + field(where, key) + "' must be a number", field(where, key));
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw ApiError(400, "'" + field(where, key) + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi),
                   field(where, key));
  return x;
}

int64_t get_int(const ojson& o, const char* key, int64_t fallback, int64_t lo, int64_t hi, const std::string& where) {
  const ojson* v = find(o, key);
  if (!v) return fallback;
  if (!v->is_number_integer() && !(v->is_number_float() && v->get<double>() == std::floor(v->get<double>()) &&
                                   std::abs(v->get<double>()) < 1e15))
    throw ApiError(400, "'" + field(where, key) + "' must be an integer", field(where, key));
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
  if (x < lo || x > hi)
    throw ApiError(400, "'" + field(where, key) + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi),
                   field(where, key));
  return x;
}

std::string get_string(const ojson& o, const char* key, const std::string& fallback, const std::string& where) {
  const ojson* v = find(o, key);
  if (!v) return fallback;
  if (!v->is_string()) throw ApiError(400, "'" + field(where, key) + "' must be a string", field(where, key));
  return v->get<std::string>();
}

std::vector<std::string> get_stop(const ojson& o, const char* key, const std::string& where) {
  const ojson* v = find(o, key);
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) out.push_back(v->get<std::string>());
  else if (v->is_array()) {
    for (const auto& s : *v) {
      if (!s.is_string()) throw ApiError(400, "'" + field(where, key) + "' must be a string or an array of strings", field(where, key));
      out.push_back(s.get<std::string>());
    }
  } else {
    throw ApiError(400, "'" + field(where, key) + "' must be a string or an array of strings", field(where, key));
  }
  if (out.size() > 16) throw ApiError(400, "at most 16 stop sequences", field(where, key));
  std::erase_if(out, [](const std::string& s) { return s.empty(); });
  return out;
}

std::shared_ptr<const JsonGrammar> schema_grammar(const ojson& schema, const std::string& field) {
  if (!schema.is_object() && !schema.is_boolean()) throw ApiError(400, "'" + field + "' must be a JSON schema object", field);
  try {
    return JsonGrammar::compile(schema);
  } catch (const Error& e) {
    throw ApiError(400, "'" + field + "': " + e.what(), field);
  }
}

ojson get_tools(const ojson& body) {
  const ojson* found = find(body, "tools");
  if (!found) return ojson::array();
  const ojson& tools = *found;
  if (!tools.is_array()) throw ApiError(400, "'tools' must be an array", "tools");
  auto good_name = [](const std::string& n) {
    return !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == ':';
    });
  };
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    const std::string w = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) throw ApiError(400, w + " must be an object", w);
    if (t.contains("type") && t["type"] != "function") throw ApiError(400, w + ".type must be \"function\"", w + ".type");
    const ojson* f = find(t, "function");
    if (!f || !f->is_object()) throw ApiError(400, w + ".function must be an object", w + ".function");
    const ojson* name = find(*f, "name");
    if (!name || !name->is_string() || !good_name(name->get<std::string>()))
      throw ApiError(400, w + ".function.name must be 1-64 letters, digits, '_', '-', '.' or ':'", w + ".function.name");
    if (const ojson* d = find(*f, "description"); d && !d->is_string())
      throw ApiError(400, w + ".function.description must be a string", w + ".function.description");
    if (const ojson* p = find(*f, "parameters")) {
      if (!p->is_object()) throw ApiError(400, w + ".function.parameters must be a JSON Schema object", w + ".function.parameters");
      if (auto ty = p->find("type"); ty != p->end() && !ty->is_string() && !ty->is_array())
        throw ApiError(400, w + ".function.parameters.type must be a string", w + ".function.parameters.type");
    }
  }
  return tools;
}

namespace {
const std::string kCallsBegin = "<｜tool▁calls▁begin｜>", kCallsEnd = "<｜tool▁calls▁end｜>";
const std::string kCallBegin = "<｜tool▁call▁begin｜>", kCallEnd = "<｜tool▁call▁end｜>", kSep = "<｜tool▁sep｜>";

// Tool definitions as a system-prompt section (V3, R1, V3.1 have no template slot for
// them; this follows the layout of vLLM's DeepSeek tool templates), showing the call
// syntax the model's format uses.
std::string tools_prompt(const ojson& tools, ToolCallSyntax syntax) {
  std::string s = "## Tools\nYou have access to the following tools:\n";
  for (const auto& t : tools) {
    const ojson& f = t["function"];
    s += "\n### " + f["name"].get<std::string>() + "\n";
    if (f.contains("description") && f["description"].is_string()) s += "Description: " + f["description"].get<std::string>() + "\n";
    s += "\nParameters: " + python_json_dumps(f.contains("parameters") ? f["parameters"] : ojson::object()) + "\n";
  }
  const std::string call = syntax == ToolCallSyntax::V31
                               ? kCallBegin + "tool_call_name" + kSep + "tool_call_arguments" + kCallEnd
                               : kCallBegin + "function" + kSep + "tool_call_name\n```json\ntool_call_arguments\n```" + kCallEnd;
  s += "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n" + kCallsBegin + call +
       "{{additional_tool_calls}}" + kCallsEnd +
       "\n\nWhere:\n- `tool_call_name` must be an exact match to one of the available tools\n"
       "- `tool_call_arguments` must be valid JSON based on the required parameters\n"
       "- `{{additional_tool_calls}}` stands for further calls in the same format, one after another\n";
  return s;
}
}  // namespace

EngineRequest chat_request(const ServedModel& m, std::vector<ChatMessage> messages, const ojson& tools, bool thinking,
                           const std::string& effort) {
  if (messages.empty()) throw ApiError(400, "'messages' must not be empty", "messages");
  const bool has_tools = tools.is_array() && !tools.empty();
  if (has_tools) {
    if (m.format == ChatFormat::V32 || m.format == ChatFormat::V4) {  // their encoders render tools on the system turn
      auto sys = std::find_if(messages.begin(), messages.end(), [](const ChatMessage& x) { return x.role == "system"; });
      if (sys == messages.end()) {
        ChatMessage s;
        s.role = "system";
        s.content = "";
        sys = messages.insert(messages.begin(), s);
      }
      sys->tools = tools;
    } else {
      ChatMessage s;
      s.role = "system";
      s.content = tools_prompt(tools, tool_call_syntax(m.format));
      auto last_sys = std::find_if(messages.rbegin(), messages.rend(), [](const ChatMessage& x) { return x.role == "system"; });
      messages.insert(last_sys == messages.rend() ? messages.begin() : last_sys.base(), s);
    }
  }
  ChatOptions o;
  o.thinking = thinking;
  o.reasoning_effort = effort;
  std::string text;
  try {
    text = render_chat(m.format, messages, o);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
  if (!utf8::is_valid(text)) throw ApiError(400, "the messages contain invalid UTF-8", "messages");
  EngineRequest r;
  r.prompt = m.tokenizer->encode(text);
  r.options.starts_in_reasoning = prompt_opens_reasoning(m.format, o);
  r.options.tool_syntax = tool_call_syntax(m.format);
  check_context(m, r.prompt.size(), "messages");
  return r;
}

void check_context(const ServedModel& m, size_t n, const std::string& param) {
  if (n == 0) throw ApiError(400, "'" + param + "' is empty", param);
  if (int64_t(n) < m.ctx) return;
  throw ApiError(400,
                 "this model's maximum context length is " + std::to_string(m.ctx) + " tokens (prompt and output), but '" +
                     param + "' alone is " + std::to_string(n) + " tokens",
                 param, "", "context_length_exceeded");
}

bool Heartbeat::operator()() {
  if (std::chrono::steady_clock::now() - last_ < std::chrono::seconds(2)) return true;
  wrote();
  return write_(filler_);
}

ojson flat_tools(const ojson& tools, const std::string& type, const std::string& default_type, const char* schema_key,
                 const std::string& refusal) {
  if (!tools.is_array()) throw ApiError(400, "'tools' must be an array", "tools");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    const std::string at = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) throw ApiError(400, "'" + at + "' must be an object", at);
    const std::string kind = get_string(t, "type", default_type, at);
    if (kind != type) throw ApiError(400, "'" + at + "': tools of type '" + kind + "' " + refusal, at);
    ojson f = {{"name", get_string(t, "name", "", at)}, {"parameters", t.contains(schema_key) ? t[schema_key] : ojson::object()}};
    if (t.contains("description")) f["description"] = t["description"];
    out.push_back({{"type", "function"}, {"function", f}});
  }
  return out;
}

std::string random_id(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string s = prefix;
  for (int i = 0; i < 24; ++i) s += digits[rng() % 62];
  return s;
}

int64_t unix_time() { return int64_t(std::time(nullptr)); }

std::string rfc3339_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count() % 1000000000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%s.%09lldZ", buf, (long long)ns);
  return out;
}

void start(Job& job, const ServedModel& m) {
  if (!m.engine) throw ApiError(503, "the model is not loaded");
  job.submitted = std::make_shared<Submitted>();
  try {
    for (auto& r : job.requests) job.submitted->handles.push_back(m.engine->submit(std::move(r)));
  } catch (const Error& e) {
    job.submitted.reset();  // cancels what was submitted
    throw ApiError(400, e.what());
  }
  job.requests.clear();
}

bool drive(Job& job, const std::function<bool(size_t, const RequestOutput&)>& on_output,
           const std::function<bool()>& alive) {
  auto& handles = job.submitted->handles;
  auto cancel_all = [&] {
    for (auto& h : handles) h->cancel();
    RequestOutput out;
    for (auto& h : handles)  // wait for the engine to let go of them
      while (h->wait(out, std::chrono::milliseconds(50))) {}
  };
  std::vector<bool> done(handles.size(), false);
  size_t remaining = handles.size();
  RequestOutput out;
  while (remaining > 0) {
    for (size_t i = 0; i < handles.size(); ++i) {
      if (done[i]) continue;
      if (!handles[i]->wait(out, std::chrono::milliseconds(handles.size() == 1 ? 200 : 20))) continue;
      if (out.finished) {
        done[i] = true;
        --remaining;
      }
      if ((!out.events.empty() || !out.logprobs.empty() || out.finished) && !on_output(i, out)) {
        cancel_all();
        return false;
      }
    }
    if (remaining > 0 && alive && !alive()) {
      cancel_all();
      return false;
    }
  }
  return true;
}

std::string token_text(const Tokenizer& tok, int32_t id) {
  if (!tok.is_valid_id(id)) return "";
  std::string b = tok.token_bytes(id);
  return utf8::is_valid(b) ? b : utf8::sanitize(b);
}

ojson token_bytes_json(const Tokenizer& tok, int32_t id) {
  ojson a = ojson::array();
  if (tok.is_valid_id(id))
    for (unsigned char c : tok.token_bytes(id)) a.push_back(int(c));
  return a;
}

ojson cache_tiers(const GenerationStats& s) {
  return {{"pool", s.cached_tokens - s.cached_ram_tokens - s.cached_disk_tokens},
          {"ram", s.cached_ram_tokens},
          {"disk", s.cached_disk_tokens}};
}

ojson cost_json(const Price& p, int64_t hit, int64_t miss, int64_t output) {
  const double h = double(hit) * p.cache_hit / 1e6, m = double(miss) * p.cache_miss / 1e6, o = double(output) * p.output / 1e6;
  return {{"prompt_cache_hit", h}, {"prompt_cache_miss", m}, {"output", o}, {"total", h + m + o}};
}

ojson timings(const GenerationStats& s) {
  const double prompt_n = double(s.prompt_tokens - s.cached_tokens);
  return {{"cache_n", s.cached_tokens},
          {"prompt_n", s.prompt_tokens - s.cached_tokens},
          {"prompt_ms", s.prefill_seconds * 1e3},
          {"prompt_per_second", s.prefill_seconds > 0 ? prompt_n / s.prefill_seconds : 0.0},
          {"predicted_n", s.generated_tokens},
          {"predicted_ms", s.decode_seconds * 1e3},
          {"predicted_per_second", s.decode_seconds > 0 ? double(s.generated_tokens - 1) / s.decode_seconds : 0.0}};
}

}  // namespace api

Price parse_price(const std::string& text) {
  Price p;
  double v[3];
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t comma = text.find(',', at);
    const std::string part = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    size_t used = 0;
    try {
      v[i] = std::stod(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || !(v[i] >= 0) || v[i] > 1e9)
      fail("--price: '", text, "' is not three prices HIT,MISS,OUTPUT per million tokens (e.g. 0.028,0.28,0.42)");
    if ((comma == std::string::npos) != (i == 2))
      fail("--price: '", text, "' is not three prices HIT,MISS,OUTPUT per million tokens (e.g. 0.028,0.28,0.42)");
    at = comma + 1;
  }
  p.set = true;
  p.cache_hit = v[0];
  p.cache_miss = v[1];
  p.output = v[2];
  return p;
}

}  // namespace whale
