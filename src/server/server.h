// `whale serve`: the HTTP server around one Engine. The socket is bound before the model
// loads, so /health answers 503 while loading and 200 once ready; every other endpoint
// answers 503 until then.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "runtime/engine.h"
#include "server/api.h"

namespace whale {

struct ServerOptions {
  std::string model;             // path to load
  std::string alias;             // model id clients use; default: the path's last component
  bool default_model = false;    // the embedded default model: the name "default" also names it
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;           // empty: no authentication
  std::string chat_format = "auto";
  std::string load = "auto";     // weights copied or mapped: core/mmap.h's LoadMode
  std::string numerics = "auto"; // caches of V3.2-style models: model/config.h's CacheNumerics
  EngineConfig engine;
  int threads = 0;               // compute threads; 0: all cores
  int http_threads = 128;        // connections served at once
  size_t max_body_bytes = 8 << 20;
  bool mirror_reasoning = false;
  Price price;                   // --price: each request's cost in `usage`
  std::string store_root;        // the model store of /api/pull, /api/tags, /api/delete; empty: none
  double shutdown_timeout = 30;  // after stop(), seconds running requests get to finish before they are cancelled
};

class Server {
 public:
  explicit Server(ServerOptions o);
  ~Server();
  // Binds, loads the model, serves until stop(). Returns the process exit code; throws
  // Error when the address cannot be bound or the model cannot be loaded.
  int run();
  void stop();
  int port() const { return bound_port_.load(); }
  // stop() ends the server: no new connections; running requests get shutdown_timeout seconds,
  // then they are cancelled (their clients get what was generated). A second stop() cancels them at once.

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<int> bound_port_{0};
  std::atomic<bool> stop_requested_{false}, cancel_now_{false};
};

}  // namespace whale
