#include "train/dataset.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "core/error.h"
#include "tokenizer/chat_format.h"
#include "tokenizer/utf8.h"

namespace whale::train {

std::string chat_prompt(const std::string& question, bool thinking) {
  ChatMessage user;
  user.role = "user";
  user.content = question;
  ChatOptions o;
  o.thinking = thinking;
  return render_chat(ChatFormat::V31, {user}, o);
}

std::vector<int32_t> encode_chat_example(const Tokenizer& tok, const std::string& question,
                                         const std::string& reasoning, const std::string& answer, bool thinking,
                                         size_t& reply_start) {
  std::vector<int32_t> ids = tok.encode(chat_prompt(question, thinking));
  reply_start = ids.size();
  tok.encode_into(thinking ? reasoning + "</think>" + answer : answer, ids);
  if (tok.eos_id() < 0) fail(tok.source(), ": the tokenizer has no eos_token (tokenizer_config.json)");
  ids.push_back(tok.eos_id());
  return ids;
}

Dataset::Dataset(const std::vector<std::string>& paths, const Tokenizer& tok, int64_t max_len) {
  if (max_len < 2) fail("training sequence length ", max_len, " is too short (at least 2)");
  const int32_t pad = tok.token_id("<｜▁pad▁｜>");
  pad_id_ = pad >= 0 ? pad : std::max<int32_t>(tok.eos_id(), 0);
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open the dataset");
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      ++stats_.lines;
      if (line.empty() || line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto skip = [&](const std::string& why) {
        ++stats_.skipped;
        if (stats_.errors.size() < 5) stats_.errors.push_back(path + ":" + std::to_string(n) + ": " + why);
      };
      if (!utf8::is_valid(line)) {
        skip("not valid UTF-8");
        continue;
      }
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        skip("not a JSON object");
        continue;
      }
      Example e;
      if (j.contains("text")) {
        if (!j["text"].is_string() || j["text"].get<std::string>().empty()) {
          skip("\"text\" is not a non-empty string");
          continue;
        }
        if (tok.bos_id() >= 0) e.tokens.push_back(tok.bos_id());
        tok.encode_into(j["text"].get<std::string>(), e.tokens);
        if (tok.eos_id() >= 0) e.tokens.push_back(tok.eos_id());
        e.weight.assign(e.tokens.size(), 1.0f);
        e.weight[0] = 0;
      } else if (j.contains("messages")) {
        const auto& m = j["messages"];
        auto str = [](const nlohmann::json& o, const char* k) {
          return o.is_object() && o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string();
        };
        if (!m.is_array() || m.size() != 2 || str(m[0], "role") != "user" || str(m[1], "role") != "assistant" ||
            str(m[0], "content").empty() || str(m[1], "content").empty()) {
          skip("\"messages\" must be a user turn then an assistant turn, both with string content");
          continue;
        }
        if (j.contains("thinking") && !j["thinking"].is_boolean()) {
          skip("\"thinking\" must be true or false");
          continue;
        }
        const bool thinking = j.value("thinking", true) && !str(m[1], "reasoning_content").empty();
        size_t start = 0;
        e.tokens = encode_chat_example(tok, str(m[0], "content"), str(m[1], "reasoning_content"),
                                       str(m[1], "content"), thinking, start);
        e.weight.assign(e.tokens.size(), 0.0f);
        for (size_t t = start; t < e.tokens.size(); ++t) e.weight[t] = 1.0f;
      } else {
        skip("neither \"text\" nor \"messages\"");
        continue;
      }
      if (int64_t(e.tokens.size()) > max_len) {
        ++stats_.truncated;
        e.tokens.resize(size_t(max_len));
        e.weight.resize(size_t(max_len));
      }
      stats_.tokens += int64_t(e.tokens.size());
      examples_.push_back(std::move(e));
    }
  }
  stats_.examples = int64_t(examples_.size());
  if (examples_.empty()) fail("the dataset has no usable examples (", stats_.skipped, " malformed lines skipped)");
}

// Epoch e's plan: a shuffle of all examples, sorted by length within windows of 32 batches
// (so a batch pads little), cut into batches, the batches shuffled again. The N % B examples
// left over sit out that epoch (different ones each epoch).
const std::vector<size_t>& Dataset::epoch_plan(uint64_t seed, int64_t epoch, int64_t B) const {
  if (plan_epoch_ == epoch && plan_seed_ == seed && plan_B_ == B) return plan_;
  const size_t N = examples_.size();
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), size_t(0));
  std::mt19937_64 g(seed * 0x9e3779b97f4a7c15ull + uint64_t(epoch));
  auto shuffle = [&](std::vector<size_t>& v) {
    for (size_t k = v.size(); k > 1; --k) std::swap(v[k - 1], v[size_t(g() % k)]);
  };
  shuffle(order);
  const size_t nb = std::max<size_t>(1, N / size_t(B)), window = size_t(B) * 32;
  while (order.size() < nb * size_t(B)) order.push_back(order[order.size() % N]);  // N < B: repeat
  order.resize(nb * size_t(B));
  for (size_t w = 0; w < order.size(); w += window) {
    auto first = order.begin() + long(w), last = order.begin() + long(std::min(order.size(), w + window));
    std::stable_sort(first, last, [&](size_t a, size_t b) { return examples_[a].tokens.size() < examples_[b].tokens.size(); });
  }
  std::vector<size_t> batches(nb);
  std::iota(batches.begin(), batches.end(), size_t(0));
  shuffle(batches);
  plan_.clear();
  for (size_t bi : batches) plan_.insert(plan_.end(), order.begin() + long(bi * size_t(B)), order.begin() + long((bi + 1) * size_t(B)));
  plan_epoch_ = epoch;
  plan_seed_ = seed;
  plan_B_ = B;
  return plan_;
}

TrainBatch Dataset::batch(uint64_t seed, int64_t step, int64_t B) const {
  const int64_t nb = std::max<int64_t>(1, int64_t(examples_.size()) / B);
  const std::vector<size_t>& plan = epoch_plan(seed, step / nb, B);
  TrainBatch b;
  b.B = B;
  std::vector<size_t> rows(plan.begin() + (step % nb) * B, plan.begin() + (step % nb + 1) * B);
  for (size_t r : rows) b.T = std::max<int64_t>(b.T, int64_t(examples_[r].tokens.size()));
  b.tokens.assign(size_t(B * b.T), pad_id_);
  b.weight.assign(size_t(B * b.T), 0.0f);
  for (int64_t i = 0; i < B; ++i) {
    const Example& e = examples_[rows[size_t(i)]];
    std::copy(e.tokens.begin(), e.tokens.end(), b.tokens.begin() + i * b.T);
    std::copy(e.weight.begin(), e.weight.end(), b.weight.begin() + i * b.T);
  }
  return b;
}

}  // namespace whale::train
