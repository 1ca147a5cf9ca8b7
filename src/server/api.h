// The HTTP API layer, independent of the HTTP library: OpenAI-compatible (/v1/...) and
// Ollama-compatible (/api/...) requests are parsed into engine requests, and engine output
// is written back in each protocol's shape (JSON, SSE for OpenAI streams, NDJSON for
// Ollama streams). server.cpp binds this to sockets; fuzz_server drives the parsers.
#pragma once
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "hub/store.h"
#include "runtime/engine.h"
#include "tokenizer/chat_format.h"

namespace whale {

using ojson = nlohmann::ordered_json;

// A request the client got wrong (or a state the server is in): an HTTP status and an
// OpenAI-style error body {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string message, std::string param = "", std::string type = "", std::string code = "");
  ojson body() const;
};

// Prices per million tokens (DeepSeek's API style: a prompt token found in the cache costs
// `cache_hit`, one computed `cache_miss`, a generated one `output`); `usage` then carries each
// request's cost.
struct Price {
  bool set = false;
  double cache_hit = 0, cache_miss = 0, output = 0;
};
Price parse_price(const std::string& text);  // "HIT,MISS,OUTPUT"; Error naming --price

// The model a server exposes.
struct ServedModel {
  std::string id;    // the name clients use ("model": ...)
  std::string path;  // where it was loaded from
  std::vector<std::string> aliases;  // other names clients may use ("default" for the embedded model)
  ChatFormat format = ChatFormat::V3;
  const Tokenizer* tokenizer = nullptr;
  const ModelConfig* config = nullptr;
  Engine* engine = nullptr;  // null in parser-only uses (fuzzing)
  int64_t ctx = 4096;
  double load_seconds = 0;
  int64_t created = 0;   // unix time the model was loaded
  uint64_t file_bytes = 0;
  bool mirror_reasoning = false;  // also send reasoning_content as `reasoning`
  Price price;

  // Whether a client's `model` names this model: its id (with Ollama's ":latest" tag), the
  // path it was loaded from, or an alias.
  bool names(const std::string& name) const {
    if (name == id || name == id + ":latest" || name == path) return true;
    for (const auto& a : aliases)
      if (name == a || name == a + ":latest") return true;
    return false;
  }
};

// The engine requests of a job once submitted; any still running when the last copy goes
// away (the response was abandoned) are cancelled.
struct Submitted {
  std::vector<std::shared_ptr<RequestHandle>> handles;
  ~Submitted();
};

// A parsed generation request: n engine requests (n > 1 for OpenAI's `n`) and what the
// response writer needs to know.
struct Job {
  std::vector<EngineRequest> requests;
  std::shared_ptr<Submitted> submitted;  // set by api::start
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  bool thinking = false;
  std::string effort;  // V4 in thinking mode: "max" for DeepSeek's maximum-effort prompt
  std::string echo;    // /v1/completions with echo: the prompt text, sent before the completion
  bool raw = false;  // completion-style text: no reasoning / tool-call parsing
};

// Reply to one HTTP request: a body, or a stream whose chunks are written through `write`
// (which returns false once the client has gone).
struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::function<void(const std::function<bool(std::string_view)>& write)> stream;
};

// ---- request parsing (throws ApiError) ----
Job parse_openai_chat(const ojson& body, const ServedModel& m);
Job parse_openai_completion(const ojson& body, const ServedModel& m);
Job parse_ollama_chat(const ojson& body, const ServedModel& m);
Job parse_ollama_generate(const ojson& body, const ServedModel& m);
ojson parse_json_body(std::string_view body);  // 400 for malformed JSON or a non-object

// ---- endpoints ----
Reply openai_chat(const ojson& body, const ServedModel& m);
Reply openai_completion(const ojson& body, const ServedModel& m);
Reply openai_models(const ServedModel& m);
// OpenAI's Responses API (responses_api.cpp): /v1/responses.
Reply openai_responses(const ojson& body, const ServedModel& m);
// Anthropic's Messages API (anthropic_api.cpp): /v1/messages and /v1/messages/count_tokens.
Reply anthropic_messages(const ojson& body, const ServedModel& m);
Reply anthropic_count_tokens(const ojson& body, const ServedModel& m);
ojson anthropic_error_body(int status, const std::string& message);  // {"type": "error", "error": {type, message}}
Reply ollama_chat(const ojson& body, const ServedModel& m);
Reply ollama_generate(const ojson& body, const ServedModel& m);
// The served model, then the models in the store (store_api.cpp; null: none).
Reply ollama_tags(const ServedModel& m, const ModelStore* store = nullptr);
Reply ollama_pull(const ojson& body, const ModelStore& store);    // NDJSON progress unless "stream": false
Reply ollama_delete(const ojson& body, const ModelStore& store);
// /api/show of a stored model that is not the one being served (its config, no chat template).
Reply ollama_show_stored(const StoredModel& m);
ojson ollama_model_info(const ModelConfig& c, const std::string& name);
ojson stored_model_tag(const StoredModel& m);
Reply ollama_show(const ojson& body, const ServedModel& m);
Reply ollama_ps(const ServedModel& m);
std::string prometheus_metrics(const EngineMetrics& m, const ServedModel& model, const KVStoreStats& kv = {});

// ---- shared pieces (api_common.cpp) ----
namespace api {
void check_model(const ojson& body, const ServedModel& m, bool required);
// Typed field access: absent or null gives `fallback`; a wrong type is a 400 naming it.
bool get_bool(const ojson& o, const char* key, bool fallback, const std::string& where = "");
double get_number(const ojson& o, const char* key, double fallback, double lo, double hi, const std::string& where = "");
int64_t get_int(const ojson& o, const char* key, int64_t fallback, int64_t lo, int64_t hi, const std::string& where = "");
std::string get_string(const ojson& o, const char* key, const std::string& fallback, const std::string& where = "");
std::vector<std::string> get_stop(const ojson& o, const char* key, const std::string& where = "");
// A JSON schema from a request compiled for constrained decoding; 400 naming `field` and the
// keyword for what is not supported.
std::shared_ptr<const JsonGrammar> schema_grammar(const ojson& schema, const std::string& field);

// The request's `tools` (an empty array when absent), validated in the OpenAI shape: 400 on
// a bad schema.
ojson get_tools(const ojson& body);
// Tools declared flat, {type, name, description, SCHEMA_KEY} (Anthropic's Messages and OpenAI's
// Responses), as chat-completions function tools. `type` is the one kind accepted (`default_type`
// when absent); another is a 400 naming the tool, ending with `refusal`.
ojson flat_tools(const ojson& tools, const std::string& type, const std::string& default_type, const char* schema_key,
                 const std::string& refusal);
// Renders the conversation (with tools and the thinking mode) into prompt tokens and the
// parser settings of the request.
EngineRequest chat_request(const ServedModel& m, std::vector<ChatMessage> messages, const ojson& tools, bool thinking,
                           const std::string& effort = "");
std::string random_id(const std::string& prefix);
int64_t unix_time();
std::string rfc3339_now();
// 400 for an empty prompt, and context_length_exceeded when a prompt of n tokens leaves no
// room to generate.
void check_context(const ServedModel& m, size_t n, const std::string& param);
// The `alive` callback of drive(): while the model is silent (a long prefill) it writes
// `filler` (an SSE comment, an empty NDJSON line, or JSON's leading whitespace) every two
// seconds, which keeps proxies patient and shows when the client has gone.
class Heartbeat {
 public:
  Heartbeat(const std::function<bool(std::string_view)>& write, std::string filler)
      : write_(write), filler_(std::move(filler)) {}
  bool operator()();
  void wrote() { last_ = std::chrono::steady_clock::now(); }  // real output went out

 private:
  const std::function<bool(std::string_view)>& write_;
  std::string filler_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};
// Submits a job's requests to the engine: 503 without a model, 400 for a request the engine
// refuses. Done before a response starts, so errors still get their status code.
void start(Job& job, const ServedModel& m);
// Waits for all of a started job's requests; `on_output(i, out)` sees each piece as it
// comes. Returns false if `on_output` or `alive()` returned false (the requests are then
// cancelled).
bool drive(Job& job, const std::function<bool(size_t, const RequestOutput&)>& on_output,
           const std::function<bool()>& alive = {});
// Text of a token for logprobs (invalid UTF-8 replaced) and its raw bytes.
std::string token_text(const Tokenizer& tok, int32_t id);
ojson token_bytes_json(const Tokenizer& tok, int32_t id);
ojson timings(const GenerationStats& s);
// The prompt cache's share of a request, per tier ({"pool", "ram", "disk"} tokens), and with a
// price set, the request's cost; added to OpenAI's `usage` and Ollama's final object.
ojson cache_tiers(const GenerationStats& s);
ojson cost_json(const Price& p, int64_t hit, int64_t miss, int64_t output);
}  // namespace api

}  // namespace whale
