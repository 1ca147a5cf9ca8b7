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
  if (r.json) json_.emplace();
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

int32_t DecodeState::choose(float* logits) {
  if (!prefix_forced_ && !req_.content_prefix.empty() && !parser_.in_reasoning() && forced_.empty()) {
    prefix_forced_ = true;
    forced_.assign(req_.content_prefix.begin(), req_.content_prefix.end());
  }
  // JSON mode: when max_tokens is near, the object is closed in time (its shortest completion
  // is forced once it needs nearly all the tokens left), so the answer is always whole JSON.
  if (json_ && forced_.empty() && !parser_.in_reasoning() && !json_->complete() && remaining() <= 96) {
    const std::string tail = json_->completion();
    const std::vector<int32_t> ids = vocab_.tokenizer->encode(tail);
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
  if (!json_ || parser_.in_reasoning()) return sampler_.sample(logits, V, req_.prompt, output_);

  // JSON mode: draw, and mask and redraw what the grammar refuses; after a few refusals
  // mask every refused token at once.
  const Tokenizer& tok = *vocab_.tokenizer;
  auto valid = [&](int32_t t) {
    if (vocab_.is_eos(t)) return json_->complete();
    return !tok.is_special(t) && json_->accepts(tok.token_bytes(t));
  };
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int32_t t = sampler_.sample(logits, V, req_.prompt, output_);
    if (logits[size_t(t)] == -INFINITY) break;
    if (valid(t)) return t;
    logits[size_t(t)] = -INFINITY;
  }
  for (int32_t t = 0; t < int32_t(V); ++t)
    if (logits[size_t(t)] != -INFINITY && !valid(t)) logits[size_t(t)] = -INFINITY;
  const int32_t t = sampler_.sample(logits, V, req_.prompt, output_);
  return logits[size_t(t)] == -INFINITY ? (vocab_.eos_ids.empty() ? t : vocab_.eos_ids.front()) : t;
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
  if (json_ && !reasoning && (!last_forced_ || json_closing_)) json_->push(vocab_.tokenizer->token_bytes(token));
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
