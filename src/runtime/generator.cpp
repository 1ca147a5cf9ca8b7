#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace whale {

namespace {
constexpr int64_t kPrefillChunk = 512;  // tokens per prefill step: bounds activation memory
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

std::string StopMatcher::push(std::string_view text, bool* stopped) {
  *stopped = false;
  held_ += text;
  if (stops_.empty()) return std::exchange(held_, "");
  size_t first = std::string::npos;
  for (const auto& s : stops_)
    if (!s.empty()) first = std::min(first, held_.find(s));
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

ChatSession::ChatSession(Model& model, const Tokenizer& tokenizer, int64_t context_tokens)
    : model_(model), tokenizer_(tokenizer), context_(context_tokens) {
  cache_ = model_.make_cache(context_);
  for (int64_t e : model_.config().eos_token_ids) eos_ids_.push_back(int32_t(e));
  if (tokenizer_.eos_id() >= 0) eos_ids_.push_back(tokenizer_.eos_id());
  think_close_ = tokenizer_.encode("</think>");
  for (int32_t id = 0; id < int32_t(model_.config().vocab_size); ++id)
    if (!tokenizer_.is_valid_id(id)) no_text_ids_.push_back(id);
}

void ChatSession::reset() {
  seq_.clear(*cache_);
  cached_tokens_.clear();
}

void ChatSession::feed(const int32_t* tokens, int64_t n, std::vector<float>& logits) {
  if (!seq_.reserve(*cache_, n)) fail("context full (", context_, " tokens)");
  Batch b;
  b.add(&seq_, tokens, n);
  model_.forward(b, *cache_, logits.data());
  cached_tokens_.insert(cached_tokens_.end(), tokens, tokens + n);
}

GenerationStats ChatSession::generate(const std::vector<int32_t>& prompt, const GenerationOptions& o,
                                      const std::function<void(const ParseEvent&)>& on_event,
                                      const std::atomic<bool>* cancel) {
  GenerationStats st;
  st.prompt_tokens = int64_t(prompt.size());
  if (prompt.empty()) fail("empty prompt");
  if (st.prompt_tokens >= context_)
    fail("the prompt is ", st.prompt_tokens, " tokens, but the context holds ", context_, " (use a larger --ctx)");
  const int64_t vocab = model_.config().vocab_size;
  for (int32_t t : prompt)
    if (t < 0 || t >= vocab) fail("prompt token id ", t, " is out of range (vocab_size ", vocab, ")");

  // Reuse the cached prefix; at least the last prompt token is recomputed for its logits.
  int64_t common = 0;
  while (common < int64_t(cached_tokens_.size()) && common < st.prompt_tokens - 1 &&
         cached_tokens_[size_t(common)] == prompt[size_t(common)])
    ++common;
  seq_.truncate(*cache_, common);
  cached_tokens_.resize(size_t(common));
  st.cached_tokens = common;

  std::vector<float> logits(static_cast<size_t>(vocab));
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = common; i < st.prompt_tokens; i += kPrefillChunk)
    feed(&prompt[size_t(i)], std::min(kPrefillChunk, st.prompt_tokens - i), logits);
  st.prefill_seconds = seconds_since(t0);

  Sampler sampler(o.sampling);
  OutputParser parser(o.starts_in_reasoning, o.tool_syntax);
  StreamDecoder decoder(tokenizer_);
  StopMatcher stop(o.stop);
  last_generated_.clear();
  const int64_t max_new = std::min(o.max_tokens, context_ - st.prompt_tokens);
  std::vector<int32_t> forced;  // tokens the thinking budget inserts
  bool stopped = false;
  auto emit = [&](const std::string& text) {
    for (const auto& e : parser.push(text)) on_event(e);
  };

  t0 = std::chrono::steady_clock::now();
  while (!stopped) {
    if (cancel && cancel->load()) {
      st.finish_reason = "cancelled";
      break;
    }
    if (st.generated_tokens >= max_new) {
      st.finish_reason = "length";
      break;
    }
    int32_t next;
    if (!forced.empty()) {
      next = forced.front();
      forced.erase(forced.begin());
    } else {
      for (int32_t id : no_text_ids_) logits[size_t(id)] = -INFINITY;  // never sample a token without text
      next = sampler.sample(logits.data(), vocab, prompt, last_generated_);
      if (std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end()) {
        st.finish_reason = "stop";
        break;
      }
    }
    const bool reasoning = parser.in_reasoning();
    last_generated_.push_back(next);
    ++st.generated_tokens;
    if (reasoning) ++st.reasoning_tokens;
    emit(stop.push(decoder.push(next), &stopped));
    if (stopped) {
      st.finish_reason = "stop";
      break;
    }
    if (parser.in_reasoning() && o.thinking_budget >= 0 && st.reasoning_tokens >= o.thinking_budget && forced.empty())
      forced = think_close_;
    if (st.generated_tokens < max_new) feed(&next, 1, logits);
  }
  if (!stopped) emit(stop.push(decoder.flush(), &stopped));
  if (!stopped) emit(stop.flush());
  for (const auto& e : parser.finish()) on_event(e);
  st.decode_seconds = seconds_since(t0);
  last_output_ = parser.result();
  return st;
}

}  // namespace whale
