// Generation for one conversation: prefill the prompt (reusing the KV cache of the prefix it
// shares with the previous turn), then sample and decode token by token, streaming the
// parsed output (reasoning, content, tool calls). Used by `whale run`; the server batches
// many sequences through its own scheduler.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "tokenizer/output_parser.h"
#include "tokenizer/tokenizer.h"

namespace whale {

struct GenerationOptions {
  SamplingParams sampling;
  int64_t max_tokens = 1024;
  std::vector<std::string> stop;      // generation ends before the first occurrence of any
  int64_t thinking_budget = -1;       // reasoning tokens before "</think>" is forced; -1: no limit
  bool starts_in_reasoning = false;   // the prompt opened a think block
  ToolCallSyntax tool_syntax = ToolCallSyntax::V3;
};

struct GenerationStats {
  int64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0, reasoning_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  std::string finish_reason;  // "stop", "length" or "cancelled"
};

// Holds back text that may be the start of a stop string; reports when one completes.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Returns the text safe to emit; sets *stopped when a stop string appeared (the text
  // before it is returned, the rest discarded).
  std::string push(std::string_view text, bool* stopped);
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

class ChatSession {
 public:
  ChatSession(Model& model, const Tokenizer& tokenizer, int64_t context_tokens);

  GenerationStats generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                           const std::function<void(const ParseEvent&)>& on_event,
                           const std::atomic<bool>* cancel = nullptr);
  const ParsedOutput& last_output() const { return last_output_; }
  const std::vector<int32_t>& last_tokens() const { return last_generated_; }
  int64_t context_tokens() const { return context_; }
  void reset();

 private:
  void feed(const int32_t* tokens, int64_t n, std::vector<float>& logits);  // forward + append

  Model& model_;
  const Tokenizer& tokenizer_;
  int64_t context_;
  std::unique_ptr<KVCache> cache_;
  SeqCache seq_;
  std::vector<int32_t> cached_tokens_;  // the tokens whose latents are in seq_
  std::vector<int32_t> eos_ids_;
  std::vector<int32_t> think_close_;    // "</think>" as tokens
  std::vector<int32_t> no_text_ids_;    // ids the model has but the tokenizer cannot write (padding rows)
  ParsedOutput last_output_;
  std::vector<int32_t> last_generated_;
};

}  // namespace whale
