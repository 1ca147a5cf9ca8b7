#include "runtime/decode_state.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace whale {

std::string StopMatcher::push(std::string_view text, bool* stopped) {
  *stopped = false;
  held_ += text;
  if (stops_.empty()) return std::exchange(held_, "");
  size_t first = std::string::npos;
  for (const auto& s : stops_)
    if (!s.empty() && held_.find(s) < first) first = held_.find(s), matched_ = s;
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  size_t keep = 0;  // longest suffix that is a proper prefix of some stop string
  for (const auto& s : stops_)
    for (size_t n = std::min(held_.size(), s.size() - 1); n > keep; --n)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() { return std::exchange(held_, ""); }

DecodeVocab::DecodeVocab(int64_t vocab, const std::vector<int64_t>& config_eos_ids, const Tokenizer* tok)
    : vocab_size(vocab), tokenizer(tok) {
  for (int64_t e : config_eos_ids) eos_ids.push_back(int32_t(e));
  if (!tok) return;
  if (tok->eos_id() >= 0) eos_ids.push_back(tok->eos_id());
  think_close = tok->encode("</think>");
  for (int32_t id = 0; id < int32_t(vocab); ++id)
    if (!tok->is_valid_id(id)) no_text_ids.push_back(id);
}

bool DecodeVocab::is_eos(int32_t t) const { return std::find(eos_ids.begin(), eos_ids.end(), t) != eos_ids.end(); }

const TokenTrie& DecodeVocab::trie() const {
  std::call_once(trie_once_, [&] { trie_ = std::make_unique<TokenTrie>(*tokenizer); });
  return *trie_;
}

DecodeState::DecodeState(const EngineRequest& r, const DecodeVocab& vocab, int64_t max_new)
    : req_(r),
      vocab_(vocab),
      max_new_(max_new),
      sampler_(r.options.sampling),
      parser_(r.options.starts_in_reasoning, r.options.tool_syntax),
      stop_(r.options.stop) {
  if (!vocab.tokenizer) {
    auto needs = [](const char* what) { fail(what, " needs a tokenizer, and this model has none"); };
    if (r.parse) needs("parsing the output (reasoning, tool calls)");
    if (!r.options.stop.empty()) needs("stop strings");
    if (r.json) needs("JSON mode");
    if (r.options.thinking_budget >= 0) needs("a thinking budget");
  } else {
    decoder_.emplace(*vocab.tokenizer);
  }
  if (r.json) json_.emplace(r.json);
  // A schema whose shortest answer cannot fit would be cut short, not valid: refused here.
  if (json_ && vocab.tokenizer && !r.options.starts_in_reasoning) {
    const std::string shortest = json_->completion();
    const int64_t need = int64_t(vocab.tokenizer->encode(shortest).size());
    if (need > max_new)
      fail("max_tokens (", max_new, " with the context left) is too small for the shortest answer the JSON schema allows: ",
           need, " tokens (", shortest.size() > 80 ? shortest.substr(0, 77) + "..." : shortest, ")");
  }
  if (r.tool_call) {
    if (!vocab.tokenizer) fail("a forced tool call needs a tokenizer, and this model has none");
    if (r.tool_call->names.empty()) fail("a forced tool call needs at least one tool name");
    call_ = Call::Pending;
    // The shortest call must fit too (the shortest over the tools the model may choose).
    const ForcedToolCall& f = *r.tool_call;
    int64_t need = INT64_MAX;
    for (size_t i = 0; i < f.names.size(); ++i) {
      const auto& g = i < r.tool_call_arguments.size() && r.tool_call_arguments[i] ? r.tool_call_arguments[i] : JsonGrammar::any_object();
      const JsonMatcher args(g, f.json_arguments ? JsonMatcher::Syntax::Json : JsonMatcher::Syntax::Dsml);
      call_need_.push_back(int64_t(vocab.tokenizer->encode(f.opening + f.names[i] + f.after_name + args.completion() + f.closing).size()));
      need = std::min(need, call_need_.back());
    }
    call_names_ = f.names;
    if (!r.options.starts_in_reasoning && need > max_new)
      fail("max_tokens (", max_new, " with the context left) is too small for the shortest tool call the tools' parameters allow: ",
           need, " tokens");
  }
  stats_.prompt_tokens = int64_t(r.prompt.size());
}

void DecodeState::observe(const float* logits) {
  const int64_t V = vocab_.vocab_size;
  float mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[i] - mx));
  lse_ = mx + float(std::log(sum));
  top_.clear();
  const int64_t k = std::min<int64_t>(req_.top_logprobs, V);
  if (k <= 0) return;
  std::vector<std::pair<float, int32_t>> best;
  best.reserve(size_t(k) + 1);
  for (int64_t i = 0; i < V; ++i) {
    if (int64_t(best.size()) == k && logits[i] <= best.back().first) continue;
    best.emplace_back(logits[i], int32_t(i));
    std::sort(best.begin(), best.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    if (int64_t(best.size()) > k) best.pop_back();
  }
  for (const auto& [l, id] : best) top_.emplace_back(id, l - lse_);
}

// Draws from the row, masking and redrawing what `valid` refuses; after a few refusals every
// refused token is masked at once (with the matcher's mask over the token list, then `valid`
// for the ids the list leaves out: special and end-of-sequence tokens). -1 when nothing in the
// row is valid.
int32_t DecodeState::sample_valid(float* logits, const std::function<bool(int32_t)>& valid, const JsonMatcher* matcher) {
  const int64_t V = vocab_.vocab_size;
  if (!sampler_.greedy() && !sampler_.filtered()) {
    // Nothing filtered: the distribution is computed once and each refused token's share is
    // set to 0 (draw() renormalizes), the same distribution as sampling the row again with
    // that logit at -inf, without a softmax over the vocabulary per refusal.
    double total = sampler_.probabilities(logits, V, req_.prompt, output_, probs_);
    for (int attempt = 0; attempt < 16; ++attempt) {
      const int32_t t = sampler_.draw(probs_, total);
      if (probs_[size_t(t)] <= 0.0f) break;  // nothing left with a share (a -inf logit has none)
      if (valid(t)) return t;
      total -= probs_[size_t(t)];
      probs_[size_t(t)] = 0.0f;
      logits[size_t(t)] = -INFINITY;
    }
  } else {
    for (int attempt = 0; attempt < 16; ++attempt) {
      const int32_t t = sampler_.sample(logits, V, req_.prompt, output_);
      if (logits[size_t(t)] == -INFINITY) break;
      if (valid(t)) return t;
      logits[size_t(t)] = -INFINITY;
    }
  }
  if (matcher) {
    constexpr uint8_t kAsk = 2;  // not in the token list: ask `valid`
    allowed_.assign(size_t(V), kAsk);
    matcher->allowed_tokens(vocab_.trie(), allowed_);
    for (int32_t e : vocab_.eos_ids)
      if (e >= 0 && e < V) allowed_[size_t(e)] = kAsk;
    for (int32_t t = 0; t < int32_t(V); ++t)
      if (logits[size_t(t)] != -INFINITY && (allowed_[size_t(t)] == kAsk ? !valid(t) : !allowed_[size_t(t)]))
        logits[size_t(t)] = -INFINITY;
  } else {
    for (int32_t t = 0; t < int32_t(V); ++t)
      if (logits[size_t(t)] != -INFINITY && !valid(t)) logits[size_t(t)] = -INFINITY;
  }
  for (int attempt = 0; attempt < 16; ++attempt) {  // `valid` may refuse what the mask allowed (a budget)
    const int32_t t = sampler_.sample(logits, V, req_.prompt, output_);
    if (logits[size_t(t)] == -INFINITY) return -1;
    if (!matcher || valid(t)) return t;
    logits[size_t(t)] = -INFINITY;
  }
  return -1;
}

// A token that continues the value `m` follows and after which the value can still be finished
// (its shortest completion, and `suffix`, fit in the tokens left); the end of the sequence only
// once the value is whole (when `eos_when_complete`).
int32_t DecodeState::sample_json(float* logits, JsonMatcher& m, bool eos_when_complete, const std::string& suffix) {
  const Tokenizer* tok = vocab_.tokenizer;
  // Special tokens never, except DSML markup where a tokenizer has it as one (DSML arguments).
  const bool dsml = call_ == Call::Args && !req_.tool_call->json_arguments;
  const int64_t left = remaining() - 1;  // after this token
  return sample_valid(
      logits,
      [&](int32_t t) {
        if (vocab_.is_eos(t)) return eos_when_complete && m.complete();
        const std::string b = tok->token_bytes(t);
        if (tok->is_special(t) && !(dsml && b.find("DSML") != std::string::npos)) return false;
        const std::optional<std::string> after = m.completion_after(b);
        if (!after) return false;
        const std::string rest = *after + suffix;
        // A token is at least one byte: a completion no longer than the tokens left always fits.
        return int64_t(rest.size()) <= left || int64_t(tok->encode(rest).size()) <= left;
      },
      &m);
}

int32_t DecodeState::force_first(std::vector<int32_t> ids) {
  forced_.assign(ids.begin(), ids.end());
  last_forced_ = true;
  const int32_t f = forced_.front();
  forced_.pop_front();
  return f;
}

void DecodeState::force(const std::string& text) {
  const std::vector<int32_t> ids = vocab_.tokenizer->encode(text);
  forced_.insert(forced_.end(), ids.begin(), ids.end());
}

// After the name: the arguments, one object valid under the tool's parameters (JSON, or DSML
// parameter lines).
void DecodeState::start_call_arguments(bool first_token_written) {
  const std::vector<int32_t> ids = vocab_.tokenizer->encode(req_.tool_call->after_name);
  forced_.insert(forced_.end(), ids.begin() + (first_token_written ? 1 : 0), ids.end());
  const auto& names = req_.tool_call->names;
  const size_t i = size_t(std::find(names.begin(), names.end(), call_name_) - names.begin());
  const auto& args = req_.tool_call_arguments;
  call_args_.emplace(i < args.size() && args[i] ? args[i] : JsonGrammar::any_object(),
                     req_.tool_call->json_arguments ? JsonMatcher::Syntax::Json : JsonMatcher::Syntax::Dsml);
  call_ = Call::Args;
}

bool DecodeState::name_extends(const std::string& text) const {
  for (const std::string& n : call_names_)
    if (n.size() >= text.size() && n.compare(0, text.size(), text) == 0) return true;
  return false;
}

int32_t DecodeState::choose(float* logits) {
  const Tokenizer* tok = vocab_.tokenizer;
  // A forced tool call: the opening markup (with the name, when only one is allowed); then the
  // name among the declared ones; the arguments as one JSON object; the closing markup.
  if (call_ == Call::Pending && forced_.empty() && !parser_.in_reasoning()) {
    const ForcedToolCall& f = *req_.tool_call;
    // Only the tools whose shortest call fits in the tokens left may be chosen.
    std::vector<std::string> fit;
    for (size_t i = 0; i < f.names.size(); ++i)
      if (call_need_[i] <= remaining()) fit.push_back(f.names[i]);
    if (!fit.empty()) call_names_ = std::move(fit);
    force(f.opening);
    if (call_names_.size() == 1) {
      call_name_ = call_names_[0];
      force(call_name_);
      start_call_arguments();
    } else {
      call_ = Call::Name;
    }
  }
  if (call_ == Call::Name && forced_.empty()) {
    const bool complete = std::find(call_names_.begin(), call_names_.end(), call_name_) != call_names_.end();
    bool longer = false;
    for (const std::string& n : call_names_) longer |= n.size() > call_name_.size() && n.compare(0, call_name_.size(), call_name_) == 0;
    if (complete && !longer) start_call_arguments();
  }
  if (call_ == Call::Args && forced_.empty()) {
    if (call_args_->complete()) {
      force(req_.tool_call->closing);
      call_ = Call::Done;
    } else if (remaining() <= 96) {  // close the arguments and the call before max_tokens cuts them
      const std::vector<int32_t> ids = tok->encode(call_args_->completion() + req_.tool_call->closing);
      if (int64_t(ids.size()) + 4 >= remaining()) {
        forced_.assign(ids.begin(), ids.end());
        call_ = Call::Done;
      }
    }
  }
  const bool in_call = call_ == Call::Pending || call_ == Call::Name || call_ == Call::Args;
  // JSON mode: when max_tokens is near, the object is closed in time (its shortest completion
  // is forced once it needs nearly all the tokens left), so the answer is always whole JSON.
  if (json_ && !in_call && forced_.empty() && !parser_.in_reasoning() && !json_->complete() && remaining() <= 96) {
    const std::vector<int32_t> ids = tok->encode(json_->completion());
    if (int64_t(ids.size()) + 4 >= remaining()) {
      forced_.assign(ids.begin(), ids.end());
      json_closing_ = true;
    }
  }
  last_forced_ = !forced_.empty();
  if (!forced_.empty()) {
    const int32_t t = forced_.front();
    forced_.pop_front();
    return t;
  }
  const int64_t V = vocab_.vocab_size;
  if (req_.options.text_only)
    for (int32_t id : vocab_.no_text_ids) logits[size_t(id)] = -INFINITY;

  if (call_ == Call::Name) {  // a declared name, written by the model
    // A name that is whole but begins a longer one ("search", "search_web") may end here: the
    // first token of the markup after the name is then allowed too.
    const bool whole = std::find(call_names_.begin(), call_names_.end(), call_name_) != call_names_.end();
    const int32_t after_first = whole ? tok->encode(req_.tool_call->after_name).front() : -1;
    const int32_t t = sample_valid(logits, [&](int32_t t) {
      if (t == after_first) return true;
      if (vocab_.is_eos(t) || tok->is_special(t)) return false;
      const std::string& b = tok->token_bytes(t);
      return !b.empty() && name_extends(call_name_ + b);
    });
    if (t >= 0) return t;
    for (const std::string& n : call_names_)  // no token continues any name: finish the first that fits
      if (n.compare(0, call_name_.size(), call_name_) == 0) {
        const std::string rest = n.substr(call_name_.size());
        call_name_ = n;
        force(rest);
        break;
      }
    start_call_arguments();
    last_forced_ = true;
    const int32_t f = forced_.front();  // after_name is never empty
    forced_.pop_front();
    return f;
  }
  if (call_ == Call::Args) {  // one JSON object, valid under the tool's parameters
    const int32_t t = sample_json(logits, *call_args_, false, req_.tool_call->closing);
    if (t >= 0) return t;
    call_ = Call::Done;  // no token fits (a vocabulary without the bytes needed): close it
    return force_first(tok->encode(call_args_->completion() + req_.tool_call->closing));
  }
  if (!json_ || parser_.in_reasoning()) return sampler_.sample(logits, V, req_.prompt, output_);

  // JSON mode: only what keeps the answer a prefix of a valid value; the end only once it is whole.
  const int32_t t = sample_json(logits, *json_, true);
  if (t >= 0) return t;
  if (!json_->complete()) {
    json_closing_ = true;
    return force_first(tok->encode(json_->completion()));
  }
  return vocab_.eos_ids.empty() ? 0 : vocab_.eos_ids.front();
}

bool DecodeState::accept(int32_t token, const float* logits) {
  if (finished_) return false;
  if (vocab_.is_eos(token) && !last_forced_ && !req_.options.ignore_eos) {
    stop_token_ = token;
    finish("stop");
    return false;
  }
  if (req_.top_logprobs >= 0) out_.logprobs.push_back({token, logits[size_t(token)] - lse_, std::move(top_)});
  const bool reasoning = parser_.in_reasoning();
  if (!last_forced_ && call_ == Call::Name) {
    const bool whole = std::find(call_names_.begin(), call_names_.end(), call_name_) != call_names_.end();
    if (whole && token == vocab_.tokenizer->encode(req_.tool_call->after_name).front()) start_call_arguments(true);
    else call_name_ += vocab_.tokenizer->token_bytes(token);
  }
  if (!last_forced_ && call_ == Call::Args) call_args_->push(vocab_.tokenizer->token_bytes(token));
  const bool in_call = call_ == Call::Pending || call_ == Call::Name || call_ == Call::Args;
  if (json_ && !reasoning && !in_call && (!last_forced_ || json_closing_)) json_->push(vocab_.tokenizer->token_bytes(token));
  output_.push_back(token);
  ++stats_.generated_tokens;
  if (reasoning) ++stats_.reasoning_tokens;
  if (decoder_) {
    bool stopped = false;
    emit(stop_.push(decoder_->push(token), &stopped));
    if (stopped) {
      stop_hit_ = true;
      stats_.stop_sequence = stop_.matched();
      finish("stop");
      return false;
    }
  }
  const int64_t budget = req_.options.thinking_budget;
  if (parser_.in_reasoning() && budget >= 0 && stats_.reasoning_tokens >= budget && forced_.empty())
    forced_.assign(vocab_.think_close.begin(), vocab_.think_close.end());
  if (stats_.generated_tokens >= max_new_) {
    finish("length");
    return false;
  }
  return true;
}

void DecodeState::emit(const std::string& text) {
  if (!req_.parse) {
    if (text.empty()) return;
    raw_text_ += text;
    out_.events.push_back({ParseEvent::Content, text});
    return;
  }
  for (auto& e : parser_.push(text)) out_.events.push_back(std::move(e));
}

void DecodeState::finish(const std::string& reason, const std::string& error) {
  if (finished_) return;
  finished_ = true;
  if (decoder_ && !stop_hit_) {  // release text held back for UTF-8 or a possible stop string
    bool stopped = false;
    std::string tail = stop_.push(decoder_->flush(), &stopped);
    if (!stopped) tail += stop_.flush();
    emit(tail);
  }
  if (req_.parse)
    for (auto& e : parser_.finish()) out_.events.push_back(std::move(e));
  stats_.finish_reason = reason;
  out_.finished = true;
  out_.result = req_.parse ? parser_.result() : ParsedOutput{{}, raw_text_, {}};
  out_.tokens = output_;
  out_.stop_token = stop_token_;
  out_.error = error;
}

RequestOutput DecodeState::take() {
  if (out_.finished) out_.stats = stats_;
  return std::exchange(out_, RequestOutput{});
}

}  // namespace whale
