// whale eval: held-out accuracy per task, thinking on or off.
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
#include "runtime/model_bundle.h"
#include "train/evaluate.h"
#include "train/tasks.h"

namespace whale {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// --- whale eval --------------------------------------------------------------------
struct EvalCliOptions {
  std::string model, tasks = "all", thinking = "both";
  train::EvalOptions eval;
  int threads = 0;
  bool json_out = false;
};

void run_eval(const EvalCliOptions& o) {
  ThreadPool pool(o.threads);
  ModelBundle b = ModelBundle::load(resolve_model(o.model), pool, "v3.1");
  train::EvalOptions e = o.eval;
  e.tasks = train::parse_task_list(o.tasks);
  std::vector<bool> modes;
  if (o.thinking == "both") modes = {true, false};
  else if (o.thinking == "on") modes = {true};
  else if (o.thinking == "off") modes = {false};
  else fail("--thinking: on, off or both");
  json all = json::array();
  if (!o.json_out) std::printf("%-16s %-9s %9s %8s %12s\n", "task", "thinking", "accuracy", "n", "tokens/ans");
  for (bool thinking : modes) {
    e.thinking = thinking;
    for (const auto& a : train::evaluate(*b.model, *b.tokenizer, e)) {
      if (o.json_out)
        all.push_back({{"task", train::task_name(a.task)}, {"thinking", thinking}, {"accuracy", a.accuracy()},
                       {"correct", a.correct}, {"total", a.total}, {"mean_tokens", a.mean_tokens}});
      else
        std::printf("%-16s %-9s %8.1f%% %8lld %12.1f\n", train::task_name(a.task), thinking ? "on" : "off",
                    100 * a.accuracy(), (long long)a.total, a.mean_tokens);
    }
  }
  if (o.json_out) std::printf("%s\n", all.dump().c_str());
}

}  // namespace

void register_eval(CLI::App& app) {
  auto e = std::make_shared<EvalCliOptions>();
  auto* ev = app.add_subcommand("eval", "Held-out accuracy on the reasoning tasks");
  ev->add_option("--model", e->model, "Model directory (\"default\": the embedded model)")->required();
  ev->add_option("--tasks", e->tasks, "all, or a list of tasks");
  ev->add_option("--thinking", e->thinking, "on, off or both (default)");
  ev->add_option("-n,--count", e->eval.per_task, "Problems per task (default 100)")->check(CLI::PositiveNumber);
  ev->add_option("--seed", e->eval.seed, "Which test problems (default 1234)");
  ev->add_option("--max-tokens", e->eval.max_tokens, "Longest answer (default 256)")->check(CLI::PositiveNumber);
  ev->add_option("--parallel", e->eval.parallel, "Sequences decoded at once (default 16)")->check(CLI::PositiveNumber);
  ev->add_flag("--json", e->json_out, "Print JSON");
  ev->add_option("-t,--threads", e->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  ev->callback([e] { run_eval(*e); });
}

}  // namespace whale
