// whale serve MODEL : the OpenAI- and Ollama-compatible HTTP server.
#include <signal.h>

#include <atomic>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "hub/store.h"
#include "core/error.h"
#include "server/server.h"

namespace whale {

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServerOptions>();
  auto* cmd = app.add_subcommand("serve", "Serve a model over OpenAI- and Ollama-compatible HTTP APIs");
  cmd->add_option("model", o->model, "Model directory or .gguf file (default: the embedded whale-r2-tiny)");
  cmd->add_option("--host", o->host, "Address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", o->port, "Port (default 8080; 0 picks a free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", o->engine.parallel, "Requests decoded together (default 4)")->check(CLI::Range(1, 1024));
  cmd->add_option("--ctx", o->engine.ctx, "Longest sequence, prompt plus output, in tokens (default 4096)")
      ->check(CLI::Range(int64_t(16), int64_t(1) << 24));
  cmd->add_option("--kv-tokens", o->engine.kv_tokens, "KV-cache pool in tokens (default parallel x ctx)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--prefill-chunk", o->engine.prefill_chunk, "Prompt tokens per request per step (default 512)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("!--no-prefix-cache", o->engine.prefix_cache, "Turn the prefix cache off");
  auto kv = std::make_shared<KVStoreFlags>();
  add_kv_store_options(cmd, *kv, "default: none");
  auto price = std::make_shared<std::string>();
  cmd->add_option("--price", *price, "HIT,MISS,OUTPUT: prices per million tokens; `usage` then has each request's cost");
  auto spec = std::make_shared<std::string>();
  auto draft = std::make_shared<int64_t>(2);
  cmd->add_option("--spec", *spec, "Speculative decoding with the model's MTP module: mtp (same output, fewer steps)")
      ->check(CLI::IsMember({"mtp"}));
  cmd->add_option("--draft", *draft, "Draft tokens per sequence and step with --spec mtp (default 2)")
      ->check(CLI::Range(1, 8));
  cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' (or env WHALE_API_KEY)")
      ->envname("WHALE_API_KEY");
  cmd->add_option("--alias", o->alias, "Model name clients use (default: the file or directory name)");
  cmd->add_option("--chat-format", o->chat_format, "auto (default), v3, r1, v3.1, v3.2, v4")
      ->check(CLI::IsMember({"auto", "v3", "r1", "v3.1", "v3.2", "v4"}));
  cmd->add_flag("--reasoning-mirror", o->mirror_reasoning, "Also send reasoning_content as `reasoning` (vLLM/Ollama name)");
  cmd->add_option("--shutdown-timeout", o->shutdown_timeout,
                  "Seconds running requests get to finish after SIGTERM/SIGINT before they are cancelled (default 30)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-body", o->max_body_bytes, "Largest request body in bytes (default 8 MiB)")->check(CLI::PositiveNumber);
  cmd->add_option("-t,--threads", o->threads, "Compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  add_load_option(cmd, o->load, o->numerics);
  cmd->callback([o, spec, draft, kv, price] {
    o->engine.draft = spec->empty() ? 0 : *draft;
    if (!price->empty()) o->price = parse_price(*price);
    o->engine.store = make_kv_store(*kv);
    // SIGINT/SIGTERM stop the server from a thread that waits for them (blocked everywhere
    // else, so no handler runs inside the HTTP or engine threads).
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a client that hangs up is a failed write, not a dead server
    const std::string typed = o->model;
    o->model = resolve_model(o->model);
    // A store name is what clients should call the model too.
    if (o->alias.empty() && !typed.empty() && typed != "default" && typed != o->model) o->alias = typed;
    o->default_model = is_default_model(o->model);
    o->store_root = ModelStore::default_root();
    Server server(*o);
    std::atomic<bool> exiting{false};
    const double grace = o->shutdown_timeout;
    std::thread waiter([&server, &exiting, set, grace] {
      for (int n = 0;; ++n) {
        int sig = 0;
        sigwait(&set, &sig);
        if (exiting.load()) return;  // woken to exit
        if (n == 0)
          std::fprintf(stderr, "whale: shutting down (running requests get %g s to finish; a second signal cancels them)\n", grace);
        server.stop();
      }
    });
    int rc = 0;
    try {
      rc = server.run();
    } catch (...) {
      exiting.store(true);
      pthread_kill(waiter.native_handle(), SIGTERM);
      waiter.join();
      throw;
    }
    exiting.store(true);
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace whale
