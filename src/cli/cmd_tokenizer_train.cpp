// whale tokenizer train: learn a byte-level BPE tokenizer from text.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/bpe_trainer.h"

namespace whale {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// --- whale tokenizer train ---------------------------------------------------------
struct TokTrainOptions {
  std::vector<std::string> inputs;
  std::string out;
  BpeTrainOptions bpe;
};

void run_tokenizer_train(const TokTrainOptions& o) {
  std::vector<std::string> texts;
  for (const std::string& path : o.inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open");
    const bool jsonl = path.size() > 6 && path.substr(path.size() - 6) == ".jsonl";
    std::string line;
    if (!jsonl) {
      std::stringstream ss;
      ss << in.rdbuf();
      texts.push_back(ss.str());
      continue;
    }
    int64_t n = 0, skipped = 0;
    while (std::getline(in, line)) {  // the text of a dataset line: "text", or every message's strings
      ++n;
      auto j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        skipped += !line.empty();
        continue;
      }
      if (j.contains("text") && j["text"].is_string()) texts.push_back(j["text"]);
      if (j.contains("messages") && j["messages"].is_array())
        for (const auto& m : j["messages"])
          for (const char* k : {"content", "reasoning_content"})
            if (m.is_object() && m.contains(k) && m[k].is_string()) texts.push_back(m[k]);
    }
    if (skipped) std::fprintf(stderr, "%s: %lld malformed lines skipped\n", path.c_str(), (long long)skipped);
  }
  const TrainedTokenizer t = train_bpe(texts, o.bpe);
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) fail(o.out, ": cannot create: ", ec.message());
  for (auto [name, text] : {std::pair{"tokenizer.json", &t.tokenizer_json}, {"tokenizer_config.json", &t.config_json}}) {
    std::ofstream f(fs::path(o.out) / name, std::ios::binary | std::ios::trunc);
    f << *text;
    if (!f) fail((fs::path(o.out) / name).string(), ": write failed");
  }
  std::printf("wrote %s: %d ids (%zu specials, 256 bytes, %d merges)\n", o.out.c_str(), t.vocab_size,
              deepseek_special_tokens().size(), t.merges);
}

}  // namespace

void register_tokenizer(CLI::App& app) {
  auto t = std::make_shared<TokTrainOptions>();
  auto* tokc = app.add_subcommand("tokenizer", "Tokenizers");
  tokc->require_subcommand(1);
  auto* tt = tokc->add_subcommand("train", "Learn a byte-level BPE (HF tokenizer.json with DeepSeek's special tokens)");
  tt->add_option("inputs", t->inputs, "Text files, or JSONL datasets (their text and message fields)")->required();
  tt->add_option("-o,--out", t->out, "Output directory")->required();
  tt->add_option("--vocab-size", t->bpe.vocab_size, "Total ids (default 1024)");
  tt->add_option("--min-frequency", t->bpe.min_frequency, "Least count of a merged pair (default 2)");
  tt->add_flag("!--group-digits", t->bpe.split_digits, "Keep DeepSeek's groups of up to 3 digits (default: one digit per token)");
  tt->callback([t] { run_tokenizer_train(*t); });
}

}  // namespace whale
