// whale run MODEL [PROMPT] : chat with a model in the terminal.
//
// Interactive when stdin is a terminal: streams answers, shows reasoning dimmed (or
// collapsed), and takes /commands. With a PROMPT argument or piped stdin it answers once
// and exits; --json prints one JSON object per answer for scripts.
#include <editline/readline.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <optional>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "cli/session_store.h"
#include "core/sha256.h"
#include "runtime/kv_store.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/model_bundle.h"

namespace whale {

namespace {

// Set by SIGINT. A signal handler can only reach a global; Ctrl-C stops the current answer
// (or clears the input line) instead of killing the chat.
std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted.store(true); }

// --format: "json" (any object), an inline JSON schema, or a schema file.
std::shared_ptr<const JsonGrammar> format_grammar(const std::string& format) {
  if (format.empty()) return nullptr;
  if (format == "json") return JsonGrammar::any_object();
  std::string text = format, source = "--format";
  if (format.front() != '{') {
    std::ifstream in(format, std::ios::binary);
    if (!in) fail("--format: ", format, " is neither \"json\", a JSON schema nor a readable schema file");
    text.assign(std::istreambuf_iterator<char>(in), {});
    source = format;
  }
  nlohmann::ordered_json schema;
  try {
    schema = nlohmann::ordered_json::parse(text);
  } catch (const std::exception& e) {
    fail(source, ": not valid JSON (", e.what(), ")");
  }
  try {
    return JsonGrammar::compile(schema);
  } catch (const Error& e) {
    fail(source, ": ", e.what());
  }
}

// Key input for libedit: waits for a key while watching for Ctrl-C, so an interrupt is seen
// whenever it arrives (libedit's own read would sleep through one that came early), and
// returns whole UTF-8 characters as code points so non-ASCII input edits correctly.
int interruptible_getc(FILE*) {
  auto next_byte = [](bool first) -> int {
    for (;;) {
      if (first && g_interrupted.load()) return EOF;
      pollfd pfd{STDIN_FILENO, POLLIN, 0};
      const int r = poll(&pfd, 1, 50);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      unsigned char c;
      const ssize_t n = read(STDIN_FILENO, &c, 1);
      if (n == 1) return c;
      if (n < 0 && errno == EINTR) continue;
      return EOF;
    }
  };
  const int b0 = next_byte(true);
  // A Ctrl-D typed while the terminal was still in cooked mode reaches us, once libedit has
  // switched to raw mode, as the kernel's stored end-of-file marker: a NUL byte.
  if (b0 == 0) return 4;
  if (b0 == EOF || b0 < 0xc0) return b0;
  const int extra = b0 >= 0xf0 ? 3 : b0 >= 0xe0 ? 2 : 1;
  int cp = b0 & (0x3f >> extra);
  for (int i = 0; i < extra; ++i) {
    const int b = next_byte(false);
    if (b == EOF || (b & 0xc0) != 0x80) return 0xfffd;
    cp = (cp << 6) | (b & 0x3f);
  }
  return cp;
}

struct RunOptions {
  std::string model, prompt, system, chat_format = "auto", load = "auto", numerics = "auto", spec, format, effort;
  bool think = false, no_think = false, json = false, collapse = false;
  std::string color = "auto";
  int64_t ctx = 4096, max_tokens = 2048, budget = -1;
  int draft = 2, logprobs = -1;
  std::vector<std::string> stop;
  SamplingParams sampling;
  bool seed_given = false;
  int threads = 0;
  KVStoreFlags kv;
  bool kv_disk_given = false;
  std::string sessions;
};

const char* kHelp =
    "Commands:\n"
    "  /think on|off   turn thinking mode on or off\n"
    "  /budget N|off   force the end of reasoning after N reasoning tokens\n"
    "  /collapse on|off  hide reasoning behind a one-line summary\n"
    "  /expand         print the reasoning of the last answer\n"
    "  /clear          forget the conversation\n"
    "  /save [NAME]    save the conversation as a session (its KV cache stays on disk)\n"
    "  /sessions       list saved sessions\n"
    "  /load NAME|ID   resume a saved session (its prompt is read back, not recomputed)\n"
    "  /drop [NAME|ID] delete a saved session (default: the current one)\n"
    "  /export FILE    write the conversation as JSON (OpenAI message format)\n"
    "  /help           this help\n"
    "  /bye            quit (or Ctrl-D)\n"
    "Ctrl-C stops the current answer.\n";

class ChatApp {
 public:
  explicit ChatApp(RunOptions o) : o_(std::move(o)), pool_(o_.threads) {
    format_ = format_grammar(o_.format);  // a bad schema is refused before the model loads
    bundle_ = ModelBundle::load(resolve_model(o_.model), pool_, o_.chat_format, parse_load_mode(o_.load), o_.numerics);
    // One sequence at a time; the prefix cache keeps the conversation so far, so each turn
    // recomputes only what is new.
    EngineConfig ec;
    ec.parallel = 1;
    ec.ctx = o_.ctx;
    ec.draft = o_.spec.empty() ? 0 : o_.draft;
    // The KV cache's disk tier keeps conversations across runs (sessions: /save, /load).
    // Keys need the weights' digest, read once per model file (then remembered): by default
    // only for models up to 64 GiB (under a minute here); bigger ones when asked (--kv-disk).
    const bool big = bundle_.model->tensors().total_bytes() > (uint64_t(64) << 30);
    if (big && !o_.kv_disk_given) {
      o_.kv.disk = "off";
      std::fprintf(stderr, "whale: note: no KV disk tier by default for a model this size: --kv-disk DIR keeps "
                           "sessions' caches (the weights are hashed once to key them)\n");
    }
    try {
      ec.store = make_kv_store(o_.kv);
    } catch (const Error& e) {
      if (o_.kv_disk_given) throw;  // asked for: an error; the default: chat on without it
      std::fprintf(stderr, "whale: note: no KV disk tier (%s); sessions will be recomputed when loaded\n", e.what());
    }
    if (ec.store) {
      identity_ = model_identity(*bundle_.model, ec.store->memo_dir());
      ec.model_identity = identity_;
    }
    engine_ = std::make_unique<Engine>(*bundle_.model, bundle_.tokenizer.get(), ec);
    const ChatFormat f = bundle_.chat_format;
    // R1 always thinks; V4 thinks by default (DeepSeek's own default for it); others on --think.
    thinking_ = f == ChatFormat::R1 || f == ChatFormat::V4 || (o_.think && f != ChatFormat::V3);
    if (o_.no_think) thinking_ = false;
    if (o_.think && f == ChatFormat::V3)
      std::fprintf(stderr, "whale: note: the %s chat format has no thinking mode\n", chat_format_name(f));
    budget_ = o_.budget;
    collapse_ = o_.collapse;
    tty_out_ = isatty(STDOUT_FILENO);
    color_ = o_.color == "always" || (o_.color == "auto" && tty_out_ && !std::getenv("NO_COLOR"));
    if (!o_.seed_given) o_.sampling.seed = std::random_device{}();
  }

  int run() {
    std::string prompt = o_.prompt;
    const bool piped = !isatty(STDIN_FILENO);
    if (piped) {
      std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
      while (!in.empty() && (in.back() == '\n' || in.back() == '\r')) in.pop_back();
      if (!in.empty()) prompt = prompt.empty() ? in : prompt + "\n\n" + in;
    }
    if (!prompt.empty() || piped) {
      if (prompt.empty()) fail("no prompt: stdin was empty");
      answer(prompt);
      return g_interrupted.load() ? 130 : 0;
    }
    repl();
    return 0;
  }

 private:
  void repl() {
    std::printf("whale: %s (%s chat format, thinking %s). /help for commands, Ctrl-D to quit.\n",
                bundle_.path.c_str(), chat_format_name(bundle_.chat_format), thinking_ ? "on" : "off");
    // Line editing needs a UTF-8 character type; fall back to C.UTF-8 when the environment's
    // locale is plain ASCII (LANG unset), as it often is over ssh or in containers.
    setlocale(LC_CTYPE, "");
    if (std::string(nl_langinfo(CODESET)) != "UTF-8") setlocale(LC_CTYPE, "C.UTF-8");
    // Before the first libedit call: using_history() already initialises libedit, which
    // copies these two settings.
    rl_catch_signals = 0;  // our SIGINT handler stays in charge
    rl_getc_function = interruptible_getc;
    using_history();
    for (;;) {
      g_interrupted.store(false);
      char* raw = readline(">>> ");
      if (!raw) {
        if (g_interrupted.load()) {  // Ctrl-C at the prompt: a fresh line, not an exit
          std::printf("\nUse Ctrl-D or /bye to exit.\n");
          continue;
        }
        std::printf("\n");
        return;
      }
      std::string line(raw);
      std::free(raw);
      if (g_interrupted.load()) {  // Ctrl-C while typing: drop the line
        std::printf("\nUse Ctrl-D or /bye to exit.\n");
        continue;
      }
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      add_history(line.c_str());
      if (line[0] == '/') {
        if (!command(line)) return;
        continue;
      }
      try {
        answer(line);
      } catch (const Error& e) {
        std::printf("\nwhale: error: %s\n", e.what());
      }
    }
  }

  // Returns false to quit.
  bool command(const std::string& line) {
    std::istringstream in(line);
    std::string cmd, arg;
    in >> cmd >> arg;
    if (cmd == "/bye" || cmd == "/exit" || cmd == "/quit") return false;
    if (cmd == "/help" || cmd == "/?") {
      std::printf("%s", kHelp);
    } else if (cmd == "/think" && (arg == "on" || arg == "off")) {
      if (arg == "on" && bundle_.chat_format == ChatFormat::V3) {
        std::printf("The %s chat format has no thinking mode.\n", chat_format_name(bundle_.chat_format));
      } else {
        thinking_ = arg == "on";
        std::printf("Thinking %s.\n", thinking_ ? "on" : "off");
      }
    } else if (cmd == "/budget" && !arg.empty()) {
      if (arg == "off") budget_ = -1;
      else if (arg.find_first_not_of("0123456789") == std::string::npos && arg.size() < 10) budget_ = std::stoll(arg);
      else {
        std::printf("Usage: /budget N|off\n");
        return true;
      }
      std::printf(budget_ < 0 ? "Thinking budget off.\n" : "Thinking budget %lld tokens.\n", (long long)budget_);
    } else if (cmd == "/collapse" && (arg == "on" || arg == "off")) {
      collapse_ = arg == "on";
      std::printf("Reasoning %s.\n", collapse_ ? "collapsed" : "shown");
    } else if (cmd == "/expand") {
      print_reasoning(last_reasoning_.empty() ? "(no reasoning in the last answer)" : last_reasoning_);
      std::printf("\n");
    } else if (cmd == "/clear") {
      history_.clear();
      std::printf("Conversation cleared.\n");
    } else if (cmd == "/export" && !arg.empty()) {
      save(arg);
    } else if (cmd == "/save" && (arg.find('/') != std::string::npos || arg.ends_with(".json"))) {
      save(arg);  // a file path: the conversation as JSON, as /export
    } else if (cmd == "/save" || cmd == "/sessions" || cmd == "/load" || cmd == "/drop") {
      try {
        if (cmd == "/save") save_session(arg);
        else if (cmd == "/sessions") list_sessions();
        else if (cmd == "/load") load_session(arg);
        else drop_session(arg);
      } catch (const std::exception& e) {  // a damaged file or a full disk: said, and the chat goes on
        std::printf("%s\n", e.what());
      }
    } else {
      std::printf("Unknown command '%s'. /help lists the commands.\n", line.c_str());
    }
    return true;
  }

  void save(const std::string& path) {
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
    for (const auto& m : history_) {
      nlohmann::ordered_json j = {{"role", m.role}, {"content", m.content.value_or("")}};
      if (m.reasoning_content && !m.reasoning_content->empty()) j["reasoning_content"] = *m.reasoning_content;
      msgs.push_back(j);
    }
    const std::string text = nlohmann::ordered_json({{"model", bundle_.path}, {"messages", msgs}}).dump(2) + "\n";
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f || std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fclose(f) != 0 ||
        std::rename(tmp.c_str(), path.c_str()) != 0) {
      std::printf("Could not write %s.\n", path.c_str());
      return;
    }
    std::printf("Saved %zu messages to %s.\n", history_.size(), path.c_str());
  }

  // Sessions: the conversation and settings in a JSON file; the KV blocks stay in the cache's
  // tiers under their content addresses.
  SessionStore sessions() const { return SessionStore(o_.sessions.empty() ? default_sessions_dir() : o_.sessions); }

  // The conversation so far (system prompt, then the turns) and how it is rendered: shared by
  // each answer's prompt and the session lookup, so the latter finds what the former cached.
  std::vector<ChatMessage> conversation() const {
    std::vector<ChatMessage> messages;
    if (!o_.system.empty()) {
      ChatMessage s;
      s.role = "system";
      s.content = o_.system;
      messages.push_back(std::move(s));
    }
    messages.insert(messages.end(), history_.begin(), history_.end());
    return messages;
  }
  ChatOptions chat_options() const {
    ChatOptions co;
    co.thinking = thinking_;
    co.reasoning_effort = o_.effort;
    if (bundle_.tokenizer->bos_id() >= 0) co.bos_token = bundle_.tokenizer->token_bytes(bundle_.tokenizer->bos_id());
    return co;
  }

  std::vector<int32_t> history_tokens() const {  // the conversation so far, as the next prompt starts
    ChatOptions co = chat_options();
    co.add_generation_prompt = false;
    return bundle_.tokenizer->encode(render_chat(bundle_.chat_format, conversation(), co));
  }

  void save_session(std::string name) {
    if (history_.empty()) fail("nothing to save yet: the conversation is empty");
    if (name.empty()) name = session_name_.empty() ? timestamp("session-%Y%m%d-%H%M%S") : session_name_;
    SessionStore::check_name(name);
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
    for (const auto& m : history_) {
      nlohmann::ordered_json j = {{"role", m.role}, {"content", m.content.value_or("")}};
      if (m.reasoning_content && !m.reasoning_content->empty()) j["reasoning_content"] = *m.reasoning_content;
      msgs.push_back(j);
    }
    const std::string identity = identity_ ? identity_->hex() : "";
    const std::string id = Sha256().update(identity).update(o_.system).update(msgs.dump()).finish().hex();
    const int64_t tokens = int64_t(history_tokens().size());
    nlohmann::ordered_json j = {{"whale_session", 1},
                                {"id", id},
                                {"saved_at", timestamp("%Y-%m-%dT%H:%M:%SZ")},
                                {"model", bundle_.path},
                                {"model_identity", identity},
                                {"chat_format", chat_format_name(bundle_.chat_format)},
                                {"system", o_.system},
                                {"thinking", thinking_},
                                {"tokens", tokens},
                                {"prefill_tokens_per_second", prefill_seconds_ > 0 ? double(prefill_tokens_) / prefill_seconds_ : 0.0},
                                {"messages", msgs}};
    bool cached = true;  // its blocks are on disk before we say so
    if (auto* store = engine_->config().store.get()) cached = store->flush();
    SessionStore st = sessions();
    st.save(name, j);
    session_name_ = name;
    std::printf("Saved session %s (id %s): %zu messages, %lld tokens%s.\n", name.c_str(), id.substr(0, 12).c_str(),
                history_.size(), (long long)tokens,
                !engine_->config().store ? "; no KV disk tier (--kv-disk off), so /load will recompute it"
                : !cached                ? "; some of its cache could not be written (disk full?): /load recomputes that part"
                                         : "");
  }

  void list_sessions() {
    SessionStore st = sessions();
    const auto all = st.list();
    if (all.empty()) {
      std::printf("No saved sessions in %s.\n", st.dir().c_str());
      return;
    }
    for (const SessionInfo& s : all)
      std::printf("  %-28s %s  %3lld messages  %6lld tokens  %s  %s\n", s.name.c_str(), s.id.substr(0, 12).c_str(),
                  (long long)s.messages, (long long)s.tokens, s.saved_at.c_str(), s.model.c_str());
  }

  void load_session(const std::string& key) {
    std::string name;
    const nlohmann::ordered_json j = sessions().load(key, &name);
    // Every field read before anything changes: a damaged file leaves the chat as it was.
    std::vector<ChatMessage> history;
    std::string system, saved_identity;
    bool thinking = thinking_;
    double rate = 0;
    try {
      for (const auto& m : j.at("messages")) {
        ChatMessage c;
        c.role = m.at("role").get<std::string>();
        if (c.role != "user" && c.role != "assistant") fail("a message with role '", c.role, "'");
        c.content = m.value("content", "");
        if (m.contains("reasoning_content")) c.reasoning_content = m["reasoning_content"].get<std::string>();
        history.push_back(std::move(c));
      }
      system = j.value("system", o_.system);
      thinking = j.value("thinking", thinking_);
      rate = j.value("prefill_tokens_per_second", 0.0);
      saved_identity = j.value("model_identity", "");
    } catch (const std::exception& e) {
      fail("session ", name, ": damaged (", e.what(), ")");
    }
    history_ = std::move(history);
    o_.system = system;
    if (bundle_.chat_format != ChatFormat::V3) thinking_ = thinking;
    session_name_ = name;
    const std::vector<int32_t> tokens = history_tokens();
    const int64_t stored = engine_->stored_prefix_tokens(tokens);
    std::printf("Loaded session %s: %zu messages, %zu tokens; %lld of them in the KV cache", name.c_str(), history_.size(),
                tokens.size(), (long long)stored);
    if (identity_ && saved_identity != identity_->hex()) std::printf(" (saved with another model)");
    if (rate > 0 && stored > 0) std::printf(", about %.1f s of prefill saved", double(stored) / rate);
    std::printf(".\n");
  }

  void drop_session(const std::string& key) {
    const std::string k = key.empty() ? session_name_ : key;
    if (k.empty()) fail("no current session: /drop NAME|ID (/sessions lists them)");
    const std::string name = sessions().drop(k);
    if (name == session_name_) session_name_.clear();
    std::printf("Deleted session %s (its cached blocks stay until the cache needs the room).\n", name.c_str());
  }

  static std::string timestamp(const char* format) {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, format, &tm);
    return buf;
  }

  void print_reasoning(const std::string& text) {
    if (color_) std::printf("\x1b[2m%s\x1b[0m", text.c_str());
    else std::printf("%s", text.c_str());
  }

  void answer(const std::string& user) {
    std::vector<ChatMessage> messages = conversation();
    ChatMessage u;
    u.role = "user";
    u.content = user;
    messages.push_back(u);

    const ChatOptions co = chat_options();
    const std::string prompt_text = render_chat(bundle_.chat_format, messages, co);
    std::vector<int32_t> prompt = bundle_.tokenizer->encode(prompt_text);

    EngineRequest req;
    req.prompt = std::move(prompt);
    req.json = format_;
    req.top_logprobs = o_.logprobs;
    GenerationOptions& go = req.options;
    go.stop = o_.stop;
    go.sampling = o_.sampling;
    go.max_tokens = o_.max_tokens;
    go.starts_in_reasoning = prompt_opens_reasoning(bundle_.chat_format, co);
    const int64_t prompt_tokens = int64_t(req.prompt.size());
    go.tool_syntax = tool_call_syntax(bundle_.chat_format);
    go.thinking_budget = budget_;
    // R1 always opens a think block; "thinking off" closes it at once.
    if (bundle_.chat_format == ChatFormat::R1 && !thinking_) go.thinking_budget = 0;

    enum { None, Reasoning, Content } shown = None;
    int64_t reasoning_tokens_shown = 0;
    auto end_reasoning = [&] {
      if (shown != Reasoning || o_.json) return;
      // Collapsed, "Thinking... " is already on the line: the summary finishes it.
      if (collapse_) std::printf("done (%lld tokens; /expand to show).\n\n", (long long)reasoning_tokens_shown);
      else if (color_) std::printf("\x1b[0m\n\n");
      else std::printf("\n...done thinking.\n\n");
    };
    auto on_event = [&](const ParseEvent& e) {
      if (o_.json) return;
      if (e.kind == ParseEvent::Reasoning) {
        if (shown != Reasoning) {
          shown = Reasoning;
          if (collapse_) std::printf("Thinking... ");
          else if (color_) std::printf("\x1b[2m");
          else std::printf("Thinking...\n");
        }
        ++reasoning_tokens_shown;
        if (!collapse_) std::printf("%s", e.text.c_str());
      } else {
        end_reasoning();
        shown = Content;
        if (e.kind == ParseEvent::ToolCallStart) std::printf("\n[tool call] %s ", e.text.c_str());
        else std::printf("%s", e.text.c_str());
      }
      std::fflush(stdout);
    };

    // g_interrupted was cleared when this line was read: a Ctrl-C typed since then stops the answer.
    if (prompt_tokens >= o_.ctx)
      fail("the prompt is ", prompt_tokens, " tokens, but the context holds ", o_.ctx, " (use a larger --ctx)");
    auto handle = engine_->submit(std::move(req));
    RequestOutput done, part;
    while (handle->wait(part, std::chrono::milliseconds(50))) {
      for (const auto& e : part.events) on_event(e);
      if (g_interrupted.load()) handle->cancel();
      done.append(std::move(part));
      part = RequestOutput{};
    }
    if (!done.error.empty()) fail(done.error);
    const GenerationStats& st = done.stats;
    end_reasoning();
    const ParsedOutput& out = done.result;
    last_reasoning_ = out.reasoning;

    ChatMessage a;
    a.role = "assistant";
    a.content = out.content;
    if (!out.reasoning.empty()) a.reasoning_content = out.reasoning;
    history_.push_back(u);
    history_.push_back(a);

    if (st.prompt_tokens > st.cached_tokens + 16 && st.prefill_seconds > 0) {  // the prompt rate, for sessions
      prefill_tokens_ += st.prompt_tokens - st.cached_tokens;
      prefill_seconds_ += st.prefill_seconds;
    }
    const double tps = st.decode_seconds > 0 ? double(st.generated_tokens) / st.decode_seconds : 0;
    if (o_.json) {
      nlohmann::ordered_json calls = nlohmann::ordered_json::array();
      for (const auto& c : out.tool_calls) calls.push_back({{"name", c.name}, {"arguments", c.arguments}});
      nlohmann::ordered_json j = {
          {"reasoning_content", out.reasoning}, {"content", out.content}, {"tool_calls", calls},
          {"finish_reason", st.finish_reason},
          {"usage", {{"prompt_tokens", st.prompt_tokens}, {"completion_tokens", st.generated_tokens},
                     {"reasoning_tokens", st.reasoning_tokens}, {"cached_tokens", st.cached_tokens},
                     {"cached_tokens_by_tier", {{"pool", st.cached_tokens - st.cached_ram_tokens - st.cached_disk_tokens},
                                                {"ram", st.cached_ram_tokens}, {"disk", st.cached_disk_tokens}}}}},
          {"timings", {{"prefill_seconds", st.prefill_seconds}, {"decode_seconds", st.decode_seconds},
                       {"tokens_per_second", tps}}}};
      if (o_.logprobs >= 0) {
        nlohmann::ordered_json lps = nlohmann::ordered_json::array();
        const Tokenizer& tok = *bundle_.tokenizer;
        auto text = [&](int32_t id) { return tok.is_valid_id(id) ? tok.token_bytes(id) : std::string(); };
        for (const TokenLogprob& lp : done.logprobs) {
          nlohmann::ordered_json top = nlohmann::ordered_json::array();
          for (const auto& [id, l] : lp.top) top.push_back({{"id", id}, {"token", text(id)}, {"logprob", l}});
          lps.push_back({{"id", lp.id}, {"token", text(lp.id)}, {"logprob", lp.logprob}, {"top_logprobs", top}});
        }
        j["logprobs"] = lps;
      }
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
      return;
    }
    if (st.finish_reason == "cancelled") std::printf(" [stopped]");
    char stats[300];
    char tiers[120] = "";
    if (st.cached_ram_tokens + st.cached_disk_tokens > 0)
      std::snprintf(tiers, sizeof tiers, " (%lld from RAM, %lld from disk in %.2f s)", (long long)st.cached_ram_tokens,
                    (long long)st.cached_disk_tokens, st.cache_load_seconds);
    std::snprintf(stats, sizeof stats, "[%lld tokens, %.1f tokens/s; prompt %lld tokens, %lld cached%s, %.2f s]",
                  (long long)st.generated_tokens, tps, (long long)st.prompt_tokens, (long long)st.cached_tokens, tiers,
                  st.prefill_seconds);
    if (tty_out_) {
      std::printf(color_ ? "\n\x1b[2m%s\x1b[0m\n" : "\n%s\n", stats);
    } else {
      std::printf("\n");
      std::fprintf(stderr, "%s\n", stats);
    }
    std::fflush(stdout);
  }

  RunOptions o_;
  std::shared_ptr<const JsonGrammar> format_;  // --format
  ThreadPool pool_;
  ModelBundle bundle_;
  std::unique_ptr<Engine> engine_;
  std::vector<ChatMessage> history_;
  std::optional<Digest> identity_;
  std::string session_name_;
  int64_t prefill_tokens_ = 0;
  double prefill_seconds_ = 0;
  bool thinking_ = false, collapse_ = false, tty_out_ = false, color_ = false;
  int64_t budget_ = -1;
  std::string last_reasoning_;
};

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  o->sampling.temperature = 0.6f;  // DeepSeek's recommendation for its reasoning models
  o->sampling.top_p = 0.95f;
  auto* cmd = app.add_subcommand("run", "Chat with a model in the terminal (or answer one PROMPT and exit)");
  cmd->add_option("model", o->model, "Model directory (default: the embedded whale-r2-tiny; \"default\" names it)");
  cmd->add_option("prompt", o->prompt, "Answer this prompt and exit");
  cmd->add_flag("--think", o->think, "Start with thinking mode on");
  cmd->add_flag("--no-think", o->no_think, "Start with thinking mode off");
  cmd->add_option("--reasoning-effort", o->effort, "DeepSeek-V4 in thinking mode: high (default) or max (its maximum-effort prompt)")
      ->check(CLI::IsMember({"high", "max"}));
  cmd->add_option("--budget", o->budget, "Thinking budget: force </think> after N reasoning tokens")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", o->json, "Print each answer as one JSON object (reasoning, content, usage, timings)");
  cmd->add_flag("--collapse", o->collapse, "Hide reasoning behind a one-line summary");
  cmd->add_option("--color", o->color, "auto (default), always, never")->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_option("--system", o->system, "System prompt");
  cmd->add_option("--chat-format", o->chat_format, "auto (default), v3, r1, v3.1, v3.2, v4")
      ->check(CLI::IsMember({"auto", "v3", "r1", "v3.1", "v3.2", "v4"}));
  cmd->add_option("--ctx", o->ctx, "Context length in tokens (default 4096)")->check(CLI::Range(int64_t(16), int64_t(1) << 24));
  cmd->add_option("--max-tokens", o->max_tokens, "Most tokens per answer (default 2048)")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", o->sampling.temperature, "Sampling temperature (default 0.6; 0 = greedy)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling (default 0.95)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k sampling (default off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p sampling (default off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--repeat-penalty", o->sampling.repetition_penalty, "Repetition penalty (default 1 = off)")->check(CLI::Range(0.01f, 10.0f));
  cmd->add_option("--seed", o->sampling.seed, "Random seed (default: random)")->each([o](const std::string&) { o->seed_given = true; });
  cmd->add_option("--stop", o->stop, "End the answer before this text (repeatable)");
  cmd->add_option("--format", o->format,
                  "json: the answer is one JSON object; or a JSON schema (inline, or a .json file) it must validate under "
                  "(constrained decoding)");
  cmd->add_option("--logprobs", o->logprobs, "With --json: log-probabilities of each token and N alternatives (0..20)")
      ->check(CLI::Range(0, 20));
  cmd->add_option("--spec", o->spec, "Speculative decoding with the model's MTP module: mtp (the same answer, in fewer steps)")
      ->check(CLI::IsMember({"mtp"}));
  cmd->add_option("--draft", o->draft, "Draft tokens per step with --spec mtp (default 2)")->check(CLI::Range(1, 8));
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  add_load_option(cmd, o->load, o->numerics);
  o->kv.disk = user_cache_dir() + "/kv";
  o->kv.disk_size = "8G";
  add_kv_store_options(cmd, o->kv, "default " + o->kv.disk + ", at most 8G; off: none");
  cmd->get_option("--kv-disk")->each([o](const std::string&) { o->kv_disk_given = true; });
  cmd->add_option("--sessions", o->sessions, "Where /save keeps sessions (default " + default_sessions_dir() + ")");
  cmd->callback([o] {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: a blocked read returns, so Ctrl-C is seen at once
    ChatApp app(*o);
    const int rc = app.run();
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace whale
