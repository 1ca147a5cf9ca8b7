// One sequence's decode state: everything between a row of logits and the text a client
// sees. The engine's output processor drives one per request; nothing else samples.
//
//   choose   forced tokens (thinking budget's "</think>", a tool-call prefix) first; else the
//            row is masked (ids without text, the JSON grammar) and the sampler draws
//   accept   the token joins the output: end-of-sequence, stop strings and max_tokens end it;
//            the stream decoder and output parser turn it into reasoning/content/tool-call
//            events; logprobs are recorded
//   finish   held-back text is released and the whole result is handed over
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <memory>
#include <mutex>

#include "runtime/json_grammar.h"
#include "runtime/request.h"
#include "runtime/sampler.h"
#include "tokenizer/output_parser.h"
#include "tokenizer/tokenizer.h"

namespace whale {

// Holds back text that may be the start of a stop string; reports when one completes.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Returns the text safe to emit; sets *stopped when a stop string appeared (the text
  // before it is returned, the rest discarded).
  std::string push(std::string_view text, bool* stopped);
  std::string flush();
  const std::string& matched() const { return matched_; }  // the stop string that ended the text

 private:
  std::vector<std::string> stops_;
  std::string held_, matched_;
};

// What every sequence's decode state needs of the model's vocabulary (shared, read-only).
struct DecodeVocab {
  int64_t vocab_size = 0;
  const Tokenizer* tokenizer = nullptr;  // null: token ids only (no text, stop strings, JSON or parsing)
  std::vector<int32_t> eos_ids;          // the config's and the tokenizer's
  std::vector<int32_t> think_close;      // "</think>" as tokens
  std::vector<int32_t> no_text_ids;      // ids the model has but the tokenizer cannot write

  DecodeVocab(int64_t vocab_size, const std::vector<int64_t>& config_eos_ids, const Tokenizer* tokenizer);
  bool is_eos(int32_t t) const;
  const TokenTrie& trie() const;  // built on first use (the first constrained request)

 private:
  mutable std::once_flag trie_once_;
  mutable std::unique_ptr<TokenTrie> trie_;
};

class DecodeState {
 public:
  // Throws Error for options the vocabulary cannot serve (text options without a tokenizer).
  // max_new: the most tokens this sequence may generate (max_tokens, cut to the context).
  DecodeState(const EngineRequest& request, const DecodeVocab& vocab, int64_t max_new);

  // Log-probabilities of a row (the model's distribution, before any mask); call before
  // choose() when the request asked for them.
  void observe(const float* logits);
  // The next token. Masks the row in place but never at the token it returns, so
  // logits[token] stays the model's logit.
  int32_t choose(float* logits);
  // Appends the chosen token; false once the sequence has finished (its end-of-sequence
  // token, a stop string, max_new).
  bool accept(int32_t token, const float* logits);
  // Ends the sequence (if it has not ended): releases held-back text, records the reason.
  void finish(const std::string& reason, const std::string& error = "");

  bool wants_logprobs() const { return req_.top_logprobs >= 0; }
  bool finished() const { return finished_; }
  bool has_output() const { return !out_.events.empty() || !out_.logprobs.empty() || out_.finished; }
  RequestOutput take();  // what was produced since the last take (everything, once finished)

  const std::vector<int32_t>& output() const { return output_; }
  GenerationStats& stats() { return stats_; }
  const GenerationStats& stats() const { return stats_; }
  int64_t max_new() const { return max_new_; }
  int64_t remaining() const { return max_new_ - stats_.generated_tokens; }

 private:
  void emit(const std::string& text);
  // Draws a token `valid` accepts; after a few refusals the row is masked whole, with
  // `matcher`'s token mask when one is given. -1 when nothing in the row is valid.
  int32_t sample_valid(float* logits, const std::function<bool(int32_t)>& valid, const JsonMatcher* matcher = nullptr);
  int32_t sample_json(float* logits, JsonMatcher& m, bool eos_when_complete, const std::string& suffix = "");
  int32_t force_first(std::vector<int32_t> ids);  // replaces forced_ with `ids`, returns the first
  void force(const std::string& text);  // appends the tokens of `text` to forced_
  void start_call_arguments(bool first_token_written = false);  // the markup after the name was begun by the model
  bool name_extends(const std::string& text) const;  // `text` begins some allowed tool name

  const EngineRequest& req_;
  const DecodeVocab& vocab_;
  int64_t max_new_;
  Sampler sampler_;
  OutputParser parser_;
  std::optional<StreamDecoder> decoder_;
  StopMatcher stop_;
  std::optional<JsonMatcher> json_;
  std::deque<int32_t> forced_;
  // The forced tool call's progress (EngineRequest::tool_call): not asked, not yet started,
  // writing the name, writing the arguments, done.
  enum class Call { Off, Pending, Name, Args, Done } call_ = Call::Off;
  std::string call_name_;                    // the name written so far
  std::vector<std::string> call_names_;      // the names it may become (those whose shortest call fits)
  std::vector<int64_t> call_need_;           // per declared name: tokens of its shortest whole call
  std::optional<JsonMatcher> call_args_;  // the arguments written so far
  std::vector<uint8_t> allowed_;  // scratch for token masks
  std::vector<float> probs_;      // scratch: the distribution redrawn from while tokens are refused
  bool last_forced_ = false;  // the token just chosen was forced, not sampled
  bool json_closing_ = false; // forced_ holds the JSON object's completion (pushed into json_)
  bool stop_hit_ = false;     // a stop string ended the output
  bool finished_ = false;
  int32_t stop_token_ = -1;
  std::vector<int32_t> output_;
  std::string raw_text_;      // the output when it is not parsed
  float lse_ = 0;             // log-sum-exp of the observed row
  std::vector<std::pair<int32_t, float>> top_;
  GenerationStats stats_;
  RequestOutput out_;         // produced, not yet taken
};

}  // namespace whale
