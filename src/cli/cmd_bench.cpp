// whale bench --tokenizer PATH --docs FILE.jsonl [-r REPEATS]
// Encode throughput of the tokenizer, single thread, over a list of documents (one JSON
// string per line); prints one JSON object with the median and spread. The model
// benchmark (prompt processing / generation) lives here too.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace whale {

namespace {
struct BenchOptions {
  std::string tokenizer, docs;
  int repeats = 5;
};

void bench_tokenizer(const BenchOptions& o) {
  auto tok = Tokenizer::load(o.tokenizer);
  std::ifstream in(o.docs);
  if (!in) fail(o.docs, ": cannot open");
  std::vector<std::string> docs;
  std::string line;
  size_t bytes = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_string()) fail(o.docs, ": line ", docs.size() + 1, " is not a JSON string");
    docs.push_back(j.get<std::string>());
    bytes += docs.back().size();
  }
  std::vector<double> secs;
  size_t tokens = 0;
  std::vector<int32_t> ids;
  for (int r = 0; r < o.repeats + 1; ++r) {  // the first pass warms caches and is not counted
    tokens = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& d : docs) {
      ids.clear();
      tok->encode_into(d, ids);
      tokens += ids.size();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) secs.push_back(s);
  }
  std::sort(secs.begin(), secs.end());
  const double median = secs[secs.size() / 2];
  nlohmann::json out = {{"docs", docs.size()},        {"bytes", bytes},
                        {"tokens", tokens},           {"median_seconds", median},
                        {"min_seconds", secs.front()}, {"max_seconds", secs.back()},
                        {"mb_per_second", double(bytes) / median / 1e6}};
  std::printf("%s\n", out.dump().c_str());
}
}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Benchmarks (tokenizer encode throughput)");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer to benchmark (model directory or tokenizer.json)");
  cmd->add_option("--docs", o->docs, "Documents to encode: one JSON string per line");
  cmd->add_option("-r,--repeats", o->repeats, "Timed repeats (default 5)")->check(CLI::Range(1, 1000));
  cmd->callback([o] {
    if (o->tokenizer.empty() || o->docs.empty()) fail("bench: give --tokenizer and --docs");
    bench_tokenizer(*o);
  });
}

}  // namespace whale
