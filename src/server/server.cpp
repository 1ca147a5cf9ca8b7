#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/thread_pool.h"
#include "runtime/model_bundle.h"

namespace whale {

namespace fs = std::filesystem;

constexpr size_t kMaxHeaders = 128;
extern const unsigned char kWebUiIndex[];  // the chat page (generated from src/server/webui)
extern const size_t kWebUiIndex_size;

struct Server::Impl {
  ServerOptions o;
  httplib::Server http;
  std::unique_ptr<ThreadPool> pool;
  ModelBundle bundle;
  std::unique_ptr<Engine> engine;
  ServedModel served;
  std::unique_ptr<ModelStore> store;  // null without ServerOptions::store_root
  std::atomic<bool> ready{false};

  // httplib's stop() does nothing until the listener thread is inside its accept loop (a stop
  // that comes earlier is lost) and must not run twice; this delivers it exactly once.
  std::mutex stop_mu;
  bool stop_delivered = false;
  void deliver_stop() {
    std::lock_guard<std::mutex> lock(stop_mu);
    if (!stop_delivered && http.is_running()) {
      http.stop();
      stop_delivered = true;
    }
  }

  // Sends a Reply: a plain body, or a chunked stream written as the engine produces it.
  static void send(Reply r, httplib::Response& res) {
    res.status = r.status;
    if (!r.stream) {
      res.set_content(r.body, r.content_type.c_str());
      return;
    }
    if (r.content_type == "text/event-stream") res.set_header("Cache-Control", "no-cache");
    // httplib gzips "application/json" when the client accepts it (httpx, so both official
    // clients, always do), and then the heartbeat of a long non-streamed answer stays in the
    // compressor: nothing reaches the socket and a client that left is never noticed. The
    // charset parameter (valid, and what the body is) keeps these replies uncompressed.
    if (r.content_type == "application/json") r.content_type = "application/json; charset=utf-8";
    res.set_chunked_content_provider(r.content_type.c_str(), [stream = std::move(r.stream)](size_t, httplib::DataSink& sink) {
      bool ok = true;
      stream([&](std::string_view s) { return ok = ok && sink.write(s.data(), s.size()); });
      if (ok) sink.done();
      return ok;
    });
  }

  // The error body in the shape of the API that was called: Ollama's endpoints (/api/...) answer
  // {"error": "message"} as Ollama does, Anthropic's (/v1/messages) {"type": "error", "error":
  // {type, message}}, the others OpenAI's {"error": {message, type, param, code}}.
  static void error(const httplib::Request& req, httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    const ojson body = req.path.rfind("/api/", 0) == 0          ? ojson{{"error", e.what()}}
                       : req.path.rfind("/v1/messages", 0) == 0 ? anthropic_error_body(e.status, e.what())
                                                                : e.body();
    res.set_content(body.dump(-1, ' ', false, ojson::error_handler_t::replace), "application/json");
  }

  // Wraps an endpoint: 503 until the model is loaded (unless it does not use the model),
  // ApiError -> its status and body.
  template <typename F>
  httplib::Server::Handler endpoint(F f, bool needs_model = true) {
    return [this, f, needs_model](const httplib::Request& req, httplib::Response& res) {
      try {
        if (needs_model && !ready.load()) throw ApiError(503, "Loading model");
        send(f(req), res);
      } catch (const ApiError& e) {
        error(req, res, e);
      } catch (const Error& e) {
        error(req, res, ApiError(400, e.what()));
      } catch (const std::exception& e) {
        error(req, res, ApiError(500, std::string("internal error: ") + e.what()));
      }
    };
  }

  void routes() {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      // httplib bounds each header line (8 KiB) but not their number.
      if (req.headers.size() > kMaxHeaders) {
        error(req, res, ApiError(431, "too many request headers (" + std::to_string(req.headers.size()) + "; at most " +
                                     std::to_string(kMaxHeaders) + ")"));
        return httplib::Server::HandlerResponse::Handled;
      }
      if (o.api_key.empty() || req.path == "/health" || req.path == "/v1/health" || req.path == "/")
        return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      const std::string key = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : req.get_header_value("x-api-key");
      if (key == o.api_key) return httplib::Server::HandlerResponse::Unhandled;
      error(req, res, ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')", "", "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404) error(req, res, ApiError(404, "no endpoint " + req.method + " " + req.path));
      else if (res.status == 413) error(req, res, ApiError(413, "the request body is too large"));
      else if (res.status >= 400) error(req, res, ApiError(res.status, "HTTP error " + std::to_string(res.status)));
    });
    http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      error(req, res, ApiError(500, "internal error: " + what));
    });
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "whale: %s %s -> %d\n", req.method.c_str(), req.path.c_str(), res.status);
    });

    auto health = [this](const httplib::Request& req, httplib::Response& res) {
      if (ready.load()) res.set_content(R"({"status":"ok"})", "application/json");
      else error(req, res, ApiError(503, "Loading model"));
    };
    http.Get("/health", health);
    http.Get("/v1/health", health);
    // The chat page (src/server/webui/index.html, embedded): it calls the API from the browser.
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(reinterpret_cast<const char*>(kWebUiIndex), kWebUiIndex_size, "text/html; charset=utf-8");
      res.set_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
      res.set_header("X-Content-Type-Options", "nosniff");
    });
    http.Get("/metrics", endpoint([this](const httplib::Request&) {
      Reply r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = prometheus_metrics(engine->metrics(), served, engine->store_stats());
      return r;
    }));
    auto body = [](const httplib::Request& req) { return parse_json_body(req.body); };
    for (const char* p : {"/v1/chat/completions", "/chat/completions"})
      http.Post(p, endpoint([this, body](const httplib::Request& req) { return openai_chat(body(req), served); }));
    for (const char* p : {"/v1/completions", "/completions"})
      http.Post(p, endpoint([this, body](const httplib::Request& req) { return openai_completion(body(req), served); }));
    for (const char* p : {"/v1/responses", "/responses"})
      http.Post(p, endpoint([this, body](const httplib::Request& req) { return openai_responses(body(req), served); }));
    http.Post("/v1/messages", endpoint([this, body](const httplib::Request& req) { return anthropic_messages(body(req), served); }));
    http.Post("/v1/messages/count_tokens",
              endpoint([this, body](const httplib::Request& req) { return anthropic_count_tokens(body(req), served); }));
    http.Get("/v1/models", endpoint([this](const httplib::Request&) { return openai_models(served); }));
    http.Get(R"(/v1/models/(.+))", endpoint([this](const httplib::Request& req) {
      if (!served.names(req.matches[1])) throw ApiError(404, "the model '" + std::string(req.matches[1]) + "' does not exist", "model", "", "model_not_found");
      Reply r = openai_models(served);
      r.body = ojson::parse(r.body)["data"][0].dump();
      return r;
    }));
    http.Post("/api/chat", endpoint([this, body](const httplib::Request& req) { return ollama_chat(body(req), served); }));
    http.Post("/api/generate", endpoint([this, body](const httplib::Request& req) { return ollama_generate(body(req), served); }));
    http.Post("/api/show", endpoint([this, body](const httplib::Request& req) {
      ojson b = body(req);
      const std::string name = b.contains("model") && b["model"].is_string() ? b["model"].get<std::string>()
                               : b.contains("name") && b["name"].is_string() ? b["name"].get<std::string>() : "";
      if (store && !name.empty() && !served.names(name))
        if (auto m = store->find(name, Catalog::load(store->root()))) return ollama_show_stored(*m);
      return ollama_show(b, served);
    }));
    http.Get("/api/tags", endpoint([this](const httplib::Request&) { return ollama_tags(served, store.get()); }));
    auto the_store = [this]() -> const ModelStore& {
      if (!store) throw ApiError(501, "this server has no model store");
      return *store;
    };
    http.Post("/api/pull", endpoint([body, the_store](const httplib::Request& req) { return ollama_pull(body(req), the_store()); }, false));
    http.Delete("/api/delete", endpoint([body, the_store](const httplib::Request& req) { return ollama_delete(body(req), the_store()); }, false));
    http.Get("/api/ps", endpoint([this](const httplib::Request&) { return ollama_ps(served); }));
    http.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"version":"0.1.0"})", "application/json");
    });
  }

  void load() {
    const auto t0 = std::chrono::steady_clock::now();
    pool = std::make_unique<ThreadPool>(o.threads);
    bundle = ModelBundle::load(o.model, *pool, o.chat_format, parse_load_mode(o.load), o.numerics);
    engine = std::make_unique<Engine>(*bundle.model, *bundle.tokenizer, o.engine);
    std::string id = o.alias;
    if (id.empty()) {
      fs::path p = fs::path(o.model);
      if (!p.has_filename()) p = p.parent_path();
      id = p.filename().string();
      if (id.size() > 5 && id.substr(id.size() - 5) == ".gguf") id.resize(id.size() - 5);
    }
    served.id = id;
    served.path = o.model;
    if (o.default_model) served.aliases = {"default"};
    served.format = bundle.chat_format;
    served.tokenizer = bundle.tokenizer.get();
    served.config = &bundle.model->config();
    served.engine = engine.get();
    served.ctx = engine->config().ctx;
    served.created = api::unix_time();
    served.mirror_reasoning = o.mirror_reasoning;
    served.price = o.price;
    std::error_code ec;
    if (fs::is_directory(o.model, ec)) {
      for (const auto& e : fs::directory_iterator(o.model, ec))
        if (e.is_regular_file(ec)) served.file_bytes += e.file_size(ec);
    } else {
      served.file_bytes = fs::file_size(o.model, ec);
    }
    served.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

Server::Server(ServerOptions o) : impl_(std::make_unique<Impl>()) {
  impl_->o = std::move(o);
  if (!impl_->o.store_root.empty()) impl_->store = std::make_unique<ModelStore>(impl_->o.store_root);
  const int n = std::max(8, impl_->o.http_threads);
  impl_->http.new_task_queue = [n] { return new httplib::ThreadPool(size_t(n)); };
  impl_->http.set_payload_max_length(impl_->o.max_body_bytes);
  impl_->http.set_read_timeout(30, 0);
  impl_->http.set_write_timeout(30, 0);
  impl_->routes();
}

Server::~Server() {
  stop();
  impl_->engine.reset();
}

void Server::stop() {
  if (stop_requested_.exchange(true)) cancel_now_.store(true);
  impl_->deliver_stop();
}

int Server::run() {
  auto& im = *impl_;
  int port = im.o.port;
  if (port == 0) port = im.http.bind_to_any_port(im.o.host);
  else if (!im.http.bind_to_port(im.o.host, port)) port = -1;
  if (port < 0) fail("cannot listen on ", im.o.host, ":", im.o.port, " (address in use or not available)");
  bound_port_.store(port);
  std::atomic<bool> listener_done{false};
  std::thread listener([&] {
    im.http.listen_after_bind();
    listener_done.store(true);
  });
  // A stop that came before the listener was running (a model that fails to load at once, a
  // signal during startup) was not delivered: it is delivered here once the listener runs.
  // The listener returns once every connection is done; requests still running when the
  // shutdown timeout passes (or a second stop comes) are cancelled so that it does.
  auto wait_for_listener = [&] {
    std::chrono::steady_clock::time_point stop_at{};
    bool cancelled = false;
    while (!listener_done.load()) {
      if (stop_requested_.load()) {
        im.deliver_stop();
        const auto now = std::chrono::steady_clock::now();
        if (stop_at == std::chrono::steady_clock::time_point{}) stop_at = now;
        const bool late = std::chrono::duration<double>(now - stop_at).count() >= im.o.shutdown_timeout;
        if (!cancelled && (late || cancel_now_.load()) && im.engine && im.ready.load()) {
          const EngineMetrics mt = im.engine->metrics();
          if (mt.running + mt.waiting > 0)
            std::fprintf(stderr, "whale: cancelling %lld running and %lld queued requests\n", (long long)mt.running,
                         (long long)mt.waiting);
          im.engine->cancel_all();
          cancelled = true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    listener.join();
  };
  std::fprintf(stderr, "whale: listening on http://%s:%d, loading %s\n", im.o.host.c_str(), port, im.o.model.c_str());
  try {
    im.load();
  } catch (...) {
    stop_requested_.store(true);
    wait_for_listener();
    throw;
  }
  im.ready.store(true);
  std::fprintf(stderr, "whale: serving '%s' (%s chat format, ctx %lld, parallel %lld) in %.1f s\n", im.served.id.c_str(),
               chat_format_name(im.served.format), (long long)im.served.ctx, (long long)im.engine->config().parallel,
               im.served.load_seconds);
  wait_for_listener();
  return 0;
}

// Prometheus text format; names follow vLLM's (`vllm:` -> `whale:`).
std::string prometheus_metrics(const EngineMetrics& m, const ServedModel& model, const KVStoreStats& kv) {
  std::string out;
  const std::string label = "{model_name=\"" + model.id + "\"}";
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + label + " " + buf + "\n";
  };
  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
    uint64_t cum = 0;
    char buf[160];
    for (size_t i = 0; i <= h.bounds.size(); ++i) {
      cum += h.counts[i];
      if (i < h.bounds.size()) std::snprintf(buf, sizeof buf, "%s_bucket{model_name=\"%s\",le=\"%g\"} %llu\n", name, model.id.c_str(), h.bounds[i], (unsigned long long)cum);
      else std::snprintf(buf, sizeof buf, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %llu\n", name, model.id.c_str(), (unsigned long long)cum);
      out += buf;
    }
    std::snprintf(buf, sizeof buf, "%s_sum%s %.17g\n%s_count%s %llu\n", name, label.c_str(), h.sum, name, label.c_str(), (unsigned long long)h.n);
    out += buf;
  };
  metric("whale:num_requests_running", "gauge", "Requests decoding or prefilling.", double(m.running));
  metric("whale:num_requests_waiting", "gauge", "Requests queued for memory or a free slot.", double(m.waiting));
  metric("whale:request_success_total", "counter", "Requests finished.", double(m.requests_total));
  metric("whale:prompt_tokens_total", "counter", "Prompt tokens of finished requests.", double(m.prompt_tokens_total));
  metric("whale:generation_tokens_total", "counter", "Generated tokens of finished requests.", double(m.generated_tokens_total));
  metric("whale:prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache.", double(m.cached_tokens_total));
  metric("whale:kv_blocks_total", "gauge", "KV-cache blocks in the pool.", double(m.kv_blocks_total));
  metric("whale:kv_blocks_free", "gauge", "KV-cache blocks free or evictable.", double(m.kv_blocks_free));
  metric("whale:kv_blocks_used", "gauge", "KV-cache blocks held by running requests.", double(m.kv_blocks_total - m.kv_blocks_free));
  metric("whale:kv_cache_usage_perc", "gauge", "Fraction of KV-cache blocks in use.",
         m.kv_blocks_total ? double(m.kv_blocks_total - m.kv_blocks_free) / double(m.kv_blocks_total) : 0.0);
  metric("whale:prefix_cache_blocks", "gauge", "Blocks indexed by the prefix cache.", double(m.prefix_cache_blocks));
  metric("whale:kv_block_size_tokens", "gauge", "Tokens per KV-cache block.", double(m.block_size));
  metric("whale:engine_steps_total", "counter", "Batched forward steps.", double(m.steps_total));
  metric("whale:engine_step_tokens_total", "counter", "Tokens processed by forward steps.", double(m.step_tokens_total));
  metric("whale:prefill_seconds_total", "counter", "Time in steps that prefilled prompt tokens.", m.prefill_seconds_total);
  metric("whale:decode_seconds_total", "counter", "Time in decode-only steps.", m.decode_seconds_total);
  metric("whale:spec_decode_num_drafts_total", "counter", "MTP verify rounds (a sequence's step with drafts).",
         double(m.spec_rounds_total));
  metric("whale:spec_decode_num_draft_tokens_total", "counter", "Tokens drafted by the MTP module.",
         double(m.spec_draft_tokens_total));
  metric("whale:spec_decode_num_accepted_tokens_total", "counter", "Drafted tokens accepted.",
         double(m.spec_accepted_tokens_total));
  if (!m.spec_accepted_at.empty()) {
    const char* name = "whale:spec_decode_num_accepted_tokens_per_pos";
    out += std::string("# HELP ") + name + " Drafted tokens accepted, by draft position.\n# TYPE " + name + " counter\n";
    for (size_t i = 0; i < m.spec_accepted_at.size(); ++i)
      out += std::string(name) + "{model_name=\"" + model.id + "\",position=\"" + std::to_string(i) + "\"} " +
             std::to_string(m.spec_accepted_at[i]) + "\n";
  }
  // The KV cache's lower tiers (--kv-ram, --kv-disk): one series per tier.
  auto tiered = [&](const char* name, const char* type, const char* help, std::initializer_list<std::pair<const char*, double>> v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    char buf[64];
    for (const auto& [tier, value] : v) {
      std::snprintf(buf, sizeof buf, "%.17g", value);
      out += std::string(name) + "{model_name=\"" + model.id + "\",tier=\"" + tier + "\"} " + buf + "\n";
    }
  };
  const DiskTierCounters& d = kv.disk_counters;
  tiered("whale:kv_tier_hit_tokens_total", "counter", "Prompt tokens served from each cache tier (pool: the engine's own blocks).",
         {{"pool", double(m.cached_tokens_total - m.cached_ram_tokens_total - m.cached_disk_tokens_total)},
          {"ram", double(m.cached_ram_tokens_total)}, {"disk", double(m.cached_disk_tokens_total)}});
  tiered("whale:kv_tier_block_hits_total", "counter", "Blocks found in a lower tier when loading.",
         {{"ram", double(kv.ram_hits)}, {"disk", double(kv.disk_hits)}});
  tiered("whale:kv_tier_block_misses_total", "counter", "Blocks looked for and not found (or not valid) in a lower tier when loading.",
         {{"ram", double(kv.ram_misses)}, {"disk", double(kv.disk_misses)}});
  tiered("whale:kv_tier_blocks", "gauge", "Blocks held by each lower tier.", {{"ram", double(kv.ram_blocks)}, {"disk", double(d.blocks)}});
  tiered("whale:kv_tier_bytes", "gauge", "Bytes held by each lower tier.", {{"ram", double(kv.ram_bytes)}, {"disk", double(d.bytes)}});
  tiered("whale:kv_tier_capacity_bytes", "gauge", "Capacity of each lower tier.",
         {{"ram", double(kv.ram_capacity)}, {"disk", double(kv.disk_capacity)}});
  tiered("whale:kv_tier_written_bytes_total", "counter", "Bytes written to each lower tier.",
         {{"ram", double(kv.ram_bytes_written)}, {"disk", double(d.write_bytes)}});
  tiered("whale:kv_tier_read_bytes_total", "counter", "Bytes read from each lower tier.",
         {{"ram", double(kv.ram_bytes_read)}, {"disk", double(d.read_bytes)}});
  tiered("whale:kv_tier_evictions_total", "counter", "Blocks dropped by each lower tier to stay within its capacity.",
         {{"ram", double(kv.ram_evictions)}, {"disk", double(d.evictions)}});
  metric("whale:kv_disk_corrupt_blocks_total", "counter", "Block files refused (truncated, corrupted, foreign) and deleted.", double(d.corrupt));
  metric("whale:kv_disk_write_errors_total", "counter", "Blocks that could not be written to disk (disk full, I/O error).",
         double(kv.write_failures));
  histogram("whale:kv_ram_load_seconds", "Time to load one block from the RAM tier.", kv.ram_load_seconds);
  histogram("whale:kv_disk_load_seconds", "Time to load and verify one block from the disk tier.", kv.disk_load_seconds);
  histogram("whale:time_to_first_token_seconds", "Time from arrival to the first generated token.", m.ttft);
  histogram("whale:inter_token_latency_seconds", "Time between consecutive tokens of a request.", m.itl);
  histogram("whale:e2e_request_latency_seconds", "Time from arrival to the end of a request.", m.e2e);
  return out;
}

}  // namespace whale
