// Helpers for tests that drive the engine.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/hf_config.h"
#include "model/random_checkpoint.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace whale::test {

// Submits the requests at once (they run concurrently) and returns each one's whole output.
inline std::vector<RequestOutput> run_all(Engine& e, const std::vector<EngineRequest>& rs) {
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& r : rs) hs.push_back(e.submit(r));
  std::vector<RequestOutput> outs;
  for (auto& h : hs) {
    RequestOutput all, part;
    while (h->wait(part)) all.append(std::move(part)), part = RequestOutput{};
    outs.push_back(std::move(all));
  }
  return outs;
}

// A random-weight model in the layout of tests/golden/GOLDEN with DeepSeek-V3's vocabulary, and
// that tokenizer: what engine tests that speak text run on (built once per test suite).
struct RandomChatModel {
  TempDir dir;
  ThreadPool pool{2};
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Model> model;

  explicit RandomChatModel(const std::string& golden) {
    auto cfg = nlohmann::json::parse(read_file(golden_dir(golden) + "/config.json"));
    cfg["vocab_size"] = 129280;
    const std::string text = cfg.dump();
    write_random_checkpoint(text, parse_hf_config(text, "cfg"), dir.path(), {}, pool);
    tok = Tokenizer::load(deepseek_v3_tokenizer());
    model = Model::load(dir.path(), pool);
  }
  // One user turn in DeepSeek-V3's chat layout.
  EngineRequest request(const std::string& user, int64_t max_tokens) const {
    EngineRequest r;
    r.prompt = tok->encode("<｜User｜>" + user + "<｜Assistant｜>", true);
    r.options.max_tokens = max_tokens;
    return r;
  }
};

}  // namespace whale::test
