// whale data gen: write verifiable reasoning tasks as JSONL.
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
#include "train/tasks.h"

namespace whale {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// --- whale data gen --------------------------------------------------------------
struct DataOptions {
  std::string tasks = "all", split = "train", format = "chat", out;
  int64_t count = 1000;
  uint64_t seed = 1;
  double thinking = 1.0;  // fraction of chat examples with thinking on
};

void run_data_gen(const DataOptions& o) {
  const auto tasks = train::parse_task_list(o.tasks);
  if (o.split != "train" && o.split != "test") fail("--split: train or test");
  if (o.format != "chat" && o.format != "text") fail("--format: chat or text");
  const train::Split split = o.split == "test" ? train::Split::Test : train::Split::Train;
  std::ofstream f;
  if (!o.out.empty()) {
    f.open(o.out, std::ios::binary | std::ios::trunc);
    if (!f) fail(o.out, ": cannot write");
  }
  std::ostream& out = o.out.empty() ? std::cout : f;
  std::mt19937_64 coin(o.seed ^ 0x7468696e6bull);
  for (int64_t i = 0; i < o.count; ++i) {
    // Tasks interleave so any prefix of the file is balanced.
    const train::Task task = tasks[size_t(i) % tasks.size()];
    const train::Problem p = train::make_problem(task, split, o.seed, i / int64_t(tasks.size()));
    json j;
    if (o.format == "text") {
      j["text"] = p.question + "\n" + p.trace + "\nAnswer: " + p.answer;
    } else {
      const bool thinking = std::uniform_real_distribution<double>(0, 1)(coin) < o.thinking;
      j["messages"] = json::array({{{"role", "user"}, {"content", p.question}},
                                   {{"role", "assistant"}, {"reasoning_content", p.trace}, {"content", p.answer}}});
      j["thinking"] = thinking;
    }
    j["task"] = train::task_name(task);
    j["answer"] = p.answer;
    if (task == train::Task::Countdown) {
      j["numbers"] = p.numbers;
      j["target"] = p.target;
    }
    out << j.dump() << "\n";
  }
  if (!out) fail(o.out.empty() ? "stdout" : o.out, ": write failed");
}

}  // namespace

void register_data(CLI::App& app) {
  auto d = std::make_shared<DataOptions>();
  auto* data = app.add_subcommand("data", "Training data");
  data->require_subcommand(1);
  auto* gen = data->add_subcommand("gen", "Write reasoning tasks with step-by-step traces as JSONL");
  gen->add_option("--tasks", d->tasks, "all, or a list of addition,multiplication,countdown,algebra");
  gen->add_option("--split", d->split, "train (default) or test (held out)");
  gen->add_option("--format", d->format, "chat (default: {\"messages\"}, SFT) or text (pretraining)");
  gen->add_option("--count", d->count, "Examples (default 1000)")->check(CLI::NonNegativeNumber);
  gen->add_option("--seed", d->seed, "Seed (default 1)");
  gen->add_option("--thinking", d->thinking, "Fraction of chat examples with thinking on (default 1)")->check(CLI::Range(0.0, 1.0));
  gen->add_option("-o,--out", d->out, "Output file (default stdout)");
  gen->callback([d] { run_data_gen(*d); });
}

}  // namespace whale
