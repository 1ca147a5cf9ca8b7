// What a client asks the engine for, and what it gets back. Every command that generates
// (serve, run, generate, bench, eval, GRPO rollouts) speaks these types.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/json_grammar.h"
#include "runtime/sampler.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/output_parser.h"

namespace whale {

// How one sequence is decoded. Text-level options (stop strings, JSON mode, parsing) need a
// tokenizer; the engine refuses them without one.
struct GenerationOptions {
  SamplingParams sampling;
  int64_t max_tokens = 1024;
  std::vector<std::string> stop;      // generation ends before the first occurrence of any
  int64_t thinking_budget = -1;       // reasoning tokens before "</think>" is forced; -1: no limit
  bool starts_in_reasoning = false;   // the prompt opened a think block
  ToolCallSyntax tool_syntax = ToolCallSyntax::V3;
  bool ignore_eos = false;            // an end-of-sequence token does not end the output
  bool text_only = true;              // never sample ids the tokenizer cannot write (padding rows)
};

struct EngineRequest {
  std::vector<int32_t> prompt;
  GenerationOptions options;
  int32_t top_logprobs = -1;             // -1: no logprobs; 0..20: the chosen token's and this many alternatives
  // The answer opens with a call to one of these tools (tool_choice "required" or named):
  // markup forced, the name chosen among the declared ones, the arguments one JSON object
  // valid under that tool's parameters (tool_call_arguments[i] for tool_call->names[i]; a
  // missing or null grammar: any object).
  std::optional<ForcedToolCall> tool_call;
  std::vector<std::shared_ptr<const JsonGrammar>> tool_call_arguments;
  // Constrains the answer to one JSON value of this grammar (response_format json_object or
  // json_schema, Ollama format); null: free text.
  std::shared_ptr<const JsonGrammar> json;
  bool parse = true;                     // false: plain text (completions), no reasoning/tool-call split
};

struct GenerationStats {
  int64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0, reasoning_tokens = 0;
  // Of cached_tokens: those loaded from the KV store's RAM and disk tiers (the rest were in
  // the engine's pool), and the time the load took.
  int64_t cached_ram_tokens = 0, cached_disk_tokens = 0;
  double cache_load_seconds = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  std::string finish_reason;  // "stop", "length", "cancelled" or "error"
  std::string stop_sequence;  // the stop string that ended the output, if one did
};

struct TokenLogprob {
  int32_t id;
  float logprob;
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens, best first
};

// What a request produced since the consumer last looked.
struct RequestOutput {
  std::vector<ParseEvent> events;
  std::vector<TokenLogprob> logprobs;
  bool finished = false;
  GenerationStats stats;        // when finished
  ParsedOutput result;          // when finished: the whole parsed output
  std::vector<int32_t> tokens;  // when finished: every generated token (not the end-of-sequence token)
  int32_t stop_token = -1;      // when finished by an end-of-sequence token: which
  std::string error;            // when finished with an error
  double ttft_seconds = 0;

  void append(RequestOutput&& more);  // `more` follows this output
};

// The client's end of a submitted request.
class RequestHandle {
 public:
  // Blocks until there is output or the request finished (or the timeout passed); moves the
  // output out. Returns false once a finished request has been fully drained.
  bool wait(RequestOutput& out, std::chrono::milliseconds timeout = std::chrono::milliseconds(100));
  RequestOutput wait_finished();  // everything, once the request has finished
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  void deliver(RequestOutput&& more);  // the engine's end

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  RequestOutput pending_;
  bool drained_ = false;
  std::atomic<bool> cancelled_{false};
};

}  // namespace whale
