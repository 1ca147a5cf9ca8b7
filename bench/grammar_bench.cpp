// Cost of grammar-constrained decoding per token: `whale_grammar_bench TOKENIZER [SCHEMA.json]`.
// Walks a valid answer token by token (the tokenizer's own tokens for it) and at every position
// times (a) the check of one drawn token (what the engine does first: JsonMatcher::accepts on
// its bytes) and (b) a whole-row mask (JsonMatcher::allowed_tokens over the vocabulary: what it
// does when the draw is refused 16 times, the worst case), plus building the token list once.
// Prints the median and maximum per position kind and over all positions, and (c) what the
// sampler adds at temperature 1 over the vocabulary: the distribution (a softmax), one draw, and
// a redraw after a refusal (the refused token's share zeroed). Built beside `whale` (see
// BENCHMARKS.md); compare with a decode step of the model measured in the same run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/json_grammar.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

using namespace whale;
using Clock = std::chrono::steady_clock;

namespace {

// A schema of the kind agents send (nested objects, enums, bounds, arrays, a format), and an
// answer for it.
const char* kSchema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":40},
  "age":{"type":"integer","minimum":0,"maximum":150},
  "email":{"type":"string","format":"email"},
  "role":{"enum":["admin","editor","viewer"]},
  "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},
     "zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","city","zip"],"additionalProperties":false},
  "scores":{"type":"array","items":{"type":"number"},"maxItems":8},
  "active":{"type":"boolean"},
  "notes":{"anyOf":[{"type":"string"},{"type":"null"}]}},
  "required":["name","age","email","role","address","scores","active","notes"],"additionalProperties":false})";
const char* kAnswer = R"({
  "name": "Ada Lovelace, Countess of Lovelace",
  "age": 36,
  "email": "ada@analytical.engine.org",
  "role": "editor",
  "address": {"street": "12 St James's Square", "city": "London", "zip": "10001"},
  "scores": [98.5, 87.25, 100, -3.5e2],
  "active": true,
  "notes": "Wrote the first published algorithm intended for a machine; notes on Menabrea's memoir."
})";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// What kind of position the text is at after `prefix` (for the report).
std::string position_kind(const std::string& prefix) {
  bool in_string = false, escaped = false;
  for (char c : prefix) {
    if (escaped) escaped = false;
    else if (c == '\\') escaped = true;
    else if (c == '"') in_string = !in_string;
  }
  if (in_string) return "in a string";
  const size_t last = prefix.find_last_not_of(" \n");
  if (last == std::string::npos) return "structure";
  const char c = prefix[last];
  if ((c >= '0' && c <= '9') || c == '.' || c == '-') return "in a number";
  return "structure";
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TOKENIZER [SCHEMA.json ANSWER.json]\n", argv[0]);
    return 2;
  }
  std::string schema_text = kSchema, answer = kAnswer;
  if (argc >= 4) {
    auto read = [](const char* path) {
      std::ifstream in(path, std::ios::binary);
      if (!in) fail(path, ": cannot read");
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    schema_text = read(argv[2]);
    answer = read(argv[3]);
  }
  auto tok = Tokenizer::load(argv[1]);
  auto t0 = Clock::now();
  const TokenTrie trie(*tok);
  const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  t0 = Clock::now();
  const auto grammar = JsonGrammar::compile(nlohmann::ordered_json::parse(schema_text));
  const double compile_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

  const std::vector<int32_t> ids = tok->encode(answer);
  JsonMatcher m(grammar);
  std::vector<uint8_t> mask(size_t(tok->vocab_size()));
  std::map<std::string, std::vector<double>> mask_us, check_us;
  std::string prefix;
  for (int32_t id : ids) {
    const std::string bytes = tok->token_bytes(id);
    const std::string kind = position_kind(prefix);
    // (a) one drawn token checked (repeated for a measurable time)
    auto c0 = Clock::now();
    constexpr int kChecks = 200;
    bool ok = true;
    for (int i = 0; i < kChecks; ++i) ok &= m.accepts(bytes);
    if (!ok) fail("the answer does not validate under the schema at: ", prefix, bytes);
    check_us[kind].push_back(std::chrono::duration<double, std::micro>(Clock::now() - c0).count() / kChecks);
    // (b) the whole row masked (median of 5)
    std::vector<double> runs;
    for (int r = 0; r < 5; ++r) {
      auto m0 = Clock::now();
      m.allowed_tokens(trie, mask);
      runs.push_back(std::chrono::duration<double, std::micro>(Clock::now() - m0).count());
    }
    if (!mask[size_t(id)]) fail("the mask refused the answer's own token at: ", prefix);
    mask_us[kind].push_back(median(runs));
    m.push(bytes);
    prefix += bytes;
  }
  if (!m.complete()) fail("the answer is not complete under the schema");
  std::vector<double> all_mask, all_check;
  for (auto& [k, v] : mask_us) all_mask.insert(all_mask.end(), v.begin(), v.end());
  for (auto& [k, v] : check_us) all_check.insert(all_check.end(), v.begin(), v.end());
  std::printf("vocabulary %d tokens (%zu in the token list); token list built in %.1f ms; schema compiled in %.2f ms\n",
              tok->vocab_size(), trie.size(), build_ms, compile_ms);
  std::printf("answer: %zu tokens\n\n", ids.size());
  std::printf("| position | n | check one token, median µs | whole-row mask, median µs | max µs |\n|---|---|---|---|---|\n");
  for (auto& [k, v] : mask_us)
    std::printf("| %s | %zu | %.2f | %.0f | %.0f |\n", k.c_str(), v.size(), median(check_us[k]), median(v),
                *std::max_element(v.begin(), v.end()));
  std::printf("| all | %zu | %.2f | %.0f | %.0f |\n", all_mask.size(), median(all_check), median(all_mask),
              *std::max_element(all_mask.begin(), all_mask.end()));
  double mean = 0;
  for (double x : all_mask) mean += x;
  std::printf("\nwhole-row mask mean: %.0f µs\n", mean / double(all_mask.size()));

  // (c) the sampler over a row of this vocabulary's size (logits ~ N(0, 3²), temperature 1)
  const int64_t V = tok->vocab_size();
  std::vector<float> logits(static_cast<size_t>(V)), probs;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float& l : logits) l = normal(gen);
  SamplingParams sp;
  sp.temperature = 1.0f;
  Sampler sampler(sp);
  std::vector<double> softmax_us, draw_us, redraw_us;
  for (int r = 0; r < 21; ++r) {
    auto s0 = Clock::now();
    double total = sampler.probabilities(logits.data(), V, {}, {}, probs);
    auto s1 = Clock::now();
    const int32_t t = sampler.draw(probs, total);
    auto s2 = Clock::now();
    total -= probs[size_t(t)];
    probs[size_t(t)] = 0.0f;
    auto s3 = Clock::now();
    const int32_t u = sampler.draw(probs, total);
    auto s4 = Clock::now();
    if (probs[size_t(u)] <= 0.0f) fail("the redraw returned the refused token");
    softmax_us.push_back(std::chrono::duration<double, std::micro>(s1 - s0).count());
    draw_us.push_back(std::chrono::duration<double, std::micro>(s2 - s1).count());
    redraw_us.push_back(std::chrono::duration<double, std::micro>(s4 - s3).count());
  }
  const double sm = median(softmax_us), dr = median(draw_us), rd = median(redraw_us);
  std::printf("\nsampling at temperature 1 over %lld logits, median µs: distribution %.0f, draw %.0f, redraw after a refusal %.0f\n",
              (long long)V, sm, dr, rd);
  std::printf("a token refused 16 times before the mask: %.0f µs of sampling (a softmax per draw: %.0f µs)\n",
              sm + dr + 15 * rd + sm + dr, 17 * (sm + dr));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "whale_grammar_bench: %s\n", e.what());
  return 1;
}
