// Ollama-compatible endpoints: /api/chat, /api/generate (NDJSON streams, `think`,
// `format`, `options`, durations in nanoseconds), /api/tags, /api/show, /api/ps
// (pull and delete: store_api.cpp).
#include <cmath>

#include "core/error.h"
#include "hub/store.h"
#include "server/api.h"

namespace whale {

using namespace api;

namespace {

int64_t ns(double seconds) { return int64_t(std::llround(seconds * 1e9)); }

// Ollama's option names and defaults (temperature 0.8, top_k 40, top_p 0.9).
void parse_options(const ojson& b, EngineRequest& r, const ServedModel& m) {
  SamplingParams& s = r.options.sampling;
  s.temperature = 0.8f;
  s.top_k = 40;
  s.top_p = 0.9f;
  s.seed = uint64_t(std::random_device{}() & 0x7fffffff);
  r.options.max_tokens = m.ctx;
  auto it = b.find("options");
  if (it == b.end() || it->is_null()) return;
  if (!it->is_object()) throw ApiError(400, "'options' must be an object", "options");
  const ojson& o = *it;
  s.temperature = float(get_number(o, "temperature", s.temperature, 0.0, 100.0, "options"));
  s.top_k = int32_t(get_int(o, "top_k", s.top_k, 0, 1 << 30, "options"));
  s.top_p = float(get_number(o, "top_p", s.top_p, 0.0, 1.0, "options"));
  s.min_p = float(get_number(o, "min_p", 0.0, 0.0, 1.0, "options"));
  s.seed = uint64_t(get_int(o, "seed", int64_t(s.seed), INT64_MIN, INT64_MAX, "options"));
  s.repetition_penalty = float(get_number(o, "repeat_penalty", 1.0, 0.01, 10.0, "options"));
  s.presence_penalty = float(get_number(o, "presence_penalty", 0.0, -2.0, 2.0, "options"));
  s.frequency_penalty = float(get_number(o, "frequency_penalty", 0.0, -2.0, 2.0, "options"));
  const int64_t num_predict = get_int(o, "num_predict", -1, -2, INT32_MAX, "options");
  if (num_predict == 0) throw ApiError(400, "'options.num_predict' must not be 0", "options.num_predict");
  if (num_predict > 0) r.options.max_tokens = num_predict;
  (void)get_int(o, "num_ctx", 0, 0, INT32_MAX, "options");  // the server's --ctx decides; checked for type only
  r.options.stop = get_stop(o, "stop", "options");
}

bool it_is_max(const ojson& b) {
  const auto it = b.find("think");
  return it != b.end() && it->is_string() && *it == "max";
}

// `think`: a boolean, or a level ("max" selects V4's maximum effort). R1 always thinks, V4
// by default, V3 never.
bool parse_think(const ojson& b, ChatFormat f, std::string& effort) {
  bool think = f == ChatFormat::R1 || f == ChatFormat::V4;
  if (auto it = b.find("think"); it != b.end() && !it->is_null()) {
    if (it->is_boolean()) think = it->get<bool>();
    else if (it->is_string() && (*it == "low" || *it == "medium" || *it == "high" || *it == "max")) think = true;
    else throw ApiError(400, "'think' must be a boolean or \"low\", \"medium\", \"high\", \"max\"", "think");
  }
  if (f == ChatFormat::R1) think = true;
  if (f == ChatFormat::V3) think = false;
  if (f == ChatFormat::V4 && think && it_is_max(b)) effort = "max";
  return think;
}

// Ollama's `format`: "json" (any object) or a JSON schema the answer must validate under.
std::shared_ptr<const JsonGrammar> parse_format(const ojson& b) {
  auto it = b.find("format");
  if (it == b.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty())) return nullptr;
  if (it->is_string() && *it == "json") return JsonGrammar::any_object();
  if (it->is_object()) return schema_grammar(*it, "format");
  throw ApiError(400, "'format' must be \"json\" or a JSON schema object", "format");
}

void reject_images(const ojson& o, const std::string& where) {
  if (auto im = o.find("images"); im != o.end() && !im->is_null() && !(im->is_array() && im->empty()))
    throw ApiError(400, "'" + where + "images': this model has no vision input", where + "images");
}

ojson tool_calls_ollama(const std::vector<ParsedToolCall>& calls) {
  ojson a = ojson::array();
  for (const auto& c : calls) {
    ojson args = ojson::parse(c.arguments, nullptr, false);
    if (args.is_discarded() || !args.is_object()) args = ojson::object();  // the model wrote no valid object
    a.push_back({{"function", {{"name", c.name}, {"arguments", args}}}});
  }
  return a;
}

// The stream / reply shared by /api/chat ("message") and /api/generate ("response").
Reply ollama_reply(Job job, const ServedModel& m, bool chat) {
  // total_duration counts from before the request is submitted: it covers the queue, the
  // prefill and the decode (prompt_eval_duration + eval_duration never exceed it).
  const auto t0 = std::chrono::steady_clock::now();
  start(job, m);
  Reply reply;
  reply.content_type = job.stream ? "application/x-ndjson" : "application/json";
  reply.stream = [job, &m, chat, t0](const std::function<bool(std::string_view)>& write) mutable {
    auto piece = [&](const std::string& content, const std::string& thinking) {
      ojson j = {{"model", m.id}, {"created_at", rfc3339_now()}};
      if (chat) {
        j["message"] = {{"role", "assistant"}, {"content", content}};
        if (!thinking.empty()) j["message"]["thinking"] = thinking;
      } else {
        j["response"] = content;
        if (!thinking.empty()) j["thinking"] = thinking;
      }
      return j;
    };
    auto line = [](const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace) + "\n"; };
    RequestOutput final_out;
    Heartbeat alive(write, job.stream ? "\n" : " ");  // a blank NDJSON line / leading JSON whitespace
    const bool ok = drive(job, [&](size_t, const RequestOutput& out) {
      if (job.stream) {
        alive.wrote();
        for (const auto& e : out.events) {
          if (e.kind == ParseEvent::Content) {
            ojson j = piece(e.text, "");
            j["done"] = false;
            if (!write(line(j))) return false;
          } else if (e.kind == ParseEvent::Reasoning) {
            ojson j = piece("", e.text);
            j["done"] = false;
            if (!write(line(j))) return false;
          }
        }
      }
      if (out.finished) final_out = out;
      return true;
    }, std::ref(alive));
    if (!ok) return;
    const auto& r = final_out.result;
    const auto& st = final_out.stats;
    ojson j = job.stream ? piece("", "") : piece(r.content, r.reasoning);
    if (chat && !r.tool_calls.empty()) {
      if (job.stream) {  // the calls, once complete, in their own message
        ojson c = piece("", "");
        c["message"]["tool_calls"] = tool_calls_ollama(r.tool_calls);
        c["done"] = false;
        if (!write(line(c))) return;
      } else {
        j["message"]["tool_calls"] = tool_calls_ollama(r.tool_calls);
      }
    }
    if (!final_out.error.empty()) {
      write(line({{"error", "generation failed: " + final_out.error}}));
      return;
    }
    j["done"] = true;
    j["done_reason"] = st.finish_reason == "cancelled" ? "stop" : st.finish_reason;
    j["total_duration"] = ns(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    j["load_duration"] = 0;
    j["prompt_eval_count"] = st.prompt_tokens - st.cached_tokens;
    j["prompt_cache_hit_tokens"] = st.cached_tokens;  // not Ollama's own fields: the prompt cache per tier
    j["prompt_cache_hit_tokens_by_tier"] = cache_tiers(st);
    if (m.price.set) j["cost"] = cost_json(m.price, st.cached_tokens, st.prompt_tokens - st.cached_tokens, st.generated_tokens);
    j["prompt_eval_duration"] = ns(st.prefill_seconds);
    j["eval_count"] = st.generated_tokens;
    j["eval_duration"] = ns(st.decode_seconds);
    write(line(j));
  };
  return reply;
}

ojson details(const ServedModel& m) {
  const bool gguf = m.path.size() > 5 && m.path.substr(m.path.size() - 5) == ".gguf";
  char size[32];
  std::snprintf(size, sizeof size, "%.1fB", double(m.file_bytes) / 2.0 / 1e9);  // ~2 bytes per parameter unless quantized
  return {{"parent_model", ""},
          {"format", gguf ? "gguf" : "safetensors"},
          {"family", "deepseek2"},
          {"families", ojson::array({"deepseek2"})},
          {"parameter_size", size},
          {"quantization_level", ""}};
}

}  // namespace

Job parse_ollama_chat(const ojson& b, const ServedModel& m) {
  check_model(b, m, true);
  auto msgs = b.find("messages");
  if (msgs == b.end() || !msgs->is_array()) throw ApiError(400, "'messages' must be an array of messages", "messages");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const ojson& x = (*msgs)[i];
    const std::string w = "messages[" + std::to_string(i) + "]";
    if (!x.is_object()) throw ApiError(400, w + " must be an object", w);
    reject_images(x, w + ".");
    ojson oa = x;  // Ollama's names -> the OpenAI message shape ChatMessage reads
    if (oa.contains("thinking")) oa["reasoning_content"] = oa["thinking"];
    if (auto tc = oa.find("tool_calls"); tc != oa.end() && tc->is_array())
      for (auto& c : *tc)
        if (c.is_object() && c.contains("function") && c["function"].is_object() && c["function"].contains("arguments") &&
            c["function"]["arguments"].is_object())
          c["function"]["arguments"] = python_json_dumps(c["function"]["arguments"]);
    try {
      messages.push_back(ChatMessage::from_json(oa, w));
    } catch (const Error& e) {
      throw ApiError(400, e.what(), w);
    }
  }
  ojson tools = get_tools(b);
  Job job;
  job.thinking = parse_think(b, m.format, job.effort);
  job.stream = get_bool(b, "stream", true);
  EngineRequest r = chat_request(m, std::move(messages), tools, job.thinking, job.effort);
  parse_options(b, r, m);
  r.json = parse_format(b);
  job.requests.push_back(std::move(r));
  return job;
}

Job parse_ollama_generate(const ojson& b, const ServedModel& m) {
  check_model(b, m, true);
  reject_images(b, "");
  if (!get_string(b, "suffix", "").empty()) throw ApiError(400, "'suffix' (fill-in-the-middle) is not supported", "suffix");
  const std::string prompt = get_string(b, "prompt", "");
  const bool raw = get_bool(b, "raw", false);
  Job job;
  job.thinking = parse_think(b, m.format, job.effort);
  job.stream = get_bool(b, "stream", true);
  EngineRequest r;
  if (raw) {
    r.prompt = m.tokenizer->encode(prompt);
    r.parse = false;
    job.raw = true;
    check_context(m, r.prompt.size(), "prompt");
  } else {
    std::vector<ChatMessage> messages;
    if (const std::string sys = get_string(b, "system", ""); !sys.empty()) {
      ChatMessage s;
      s.role = "system";
      s.content = sys;
      messages.push_back(s);
    }
    ChatMessage u;
    u.role = "user";
    u.content = prompt;
    messages.push_back(u);
    r = chat_request(m, std::move(messages), ojson::array(), job.thinking, job.effort);
  }
  parse_options(b, r, m);
  r.json = parse_format(b);
  job.requests.push_back(std::move(r));
  return job;
}

Reply ollama_chat(const ojson& body, const ServedModel& m) {
  check_model(body, m, true);
  if (auto it = body.find("messages"); it != body.end() && it->is_array() && it->empty()) {  // Ollama: an empty chat loads the model
    Reply r;
    r.body = ojson{{"model", m.id}, {"created_at", rfc3339_now()}, {"message", {{"role", "assistant"}, {"content", ""}}},
                   {"done", true}, {"done_reason", "load"}}.dump();
    return r;
  }
  return ollama_reply(parse_ollama_chat(body, m), m, true);
}

Reply ollama_generate(const ojson& body, const ServedModel& m) {
  check_model(body, m, true);
  if (get_string(body, "prompt", "").empty()) {  // Ollama: an empty prompt loads the model
    Reply r;
    r.body = ojson{{"model", m.id}, {"created_at", rfc3339_now()}, {"response", ""}, {"done", true}, {"done_reason", "load"}}.dump();
    return r;
  }
  return ollama_reply(parse_ollama_generate(body, m), m, false);
}

Reply ollama_tags(const ServedModel& m, const ModelStore* store) {
  Reply r;
  ojson model = {{"name", m.id}, {"model", m.id}, {"modified_at", rfc3339_now()}, {"size", m.file_bytes},
                 {"digest", ""}, {"details", details(m)}};
  ojson models = ojson::array({model});
  if (store)
    for (const StoredModel& s : store->list())
      if (!m.names(s.name) && s.model_path() != m.path) models.push_back(stored_model_tag(s));
  r.body = ojson{{"models", models}}.dump();
  return r;
}

Reply ollama_ps(const ServedModel& m) {
  Reply r;
  ojson model = {{"name", m.id}, {"model", m.id}, {"size", m.file_bytes}, {"digest", ""}, {"details", details(m)},
                 {"expires_at", "2318-01-01T00:00:00Z"}, {"size_vram", 0}, {"context_length", m.ctx}};
  r.body = ojson{{"models", ojson::array({model})}}.dump();
  return r;
}

Reply ollama_show(const ojson& body, const ServedModel& m) {
  ojson b = body;
  if (!b.contains("model") && b.contains("name")) b["model"] = b["name"];
  check_model(b, m, true);
  const ModelConfig& c = *m.config;
  ojson caps = ojson::array({"completion", "tools"});
  if (m.format != ChatFormat::V3) caps.push_back("thinking");
  Reply r;
  r.body = ojson{{"modelfile", ""},
                 {"parameters", ""},
                 {"template", m.tokenizer->chat_template()},
                 {"details", details(m)},
                 {"model_info", ollama_model_info(c, m.id)},
                 {"capabilities", caps}}
               .dump();
  return r;
}

ojson ollama_model_info(const ModelConfig& c, const std::string& name) {
  return {{"general.architecture", "deepseek2"},
          {"general.basename", name},
          {"deepseek2.block_count", c.num_hidden_layers},
          {"deepseek2.context_length", c.max_position_embeddings},
          {"deepseek2.embedding_length", c.hidden_size},
          {"deepseek2.attention.head_count", c.num_attention_heads},
          {"deepseek2.attention.kv_lora_rank", c.kv_lora_rank},
          {"deepseek2.expert_count", c.n_routed_experts},
          {"deepseek2.expert_used_count", c.num_experts_per_tok},
          {"deepseek2.vocab_size", c.vocab_size}};
}

}  // namespace whale
