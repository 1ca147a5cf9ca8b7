// whale init --config CONFIG.json --out DIR [--dtype bf16|f32|fp8] [--seed S]
// Writes a random-weight checkpoint in the Hugging Face layout of the given config.
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "core/mmap.h"
#include "model/hf_config.h"
#include "model/random_checkpoint.h"

namespace whale {

namespace {
struct InitOptions {
  std::string config, out, dtype = "bf16";
  uint64_t seed = 0;
  int threads = 0;
};
}  // namespace

void register_init(CLI::App& app) {
  auto o = std::make_shared<InitOptions>();
  auto* cmd = app.add_subcommand("init", "Write a random-weight checkpoint (HF layout) for a config.json");
  cmd->add_option("--config", o->config, "A DeepSeek config.json")->required();
  cmd->add_option("--out", o->out, "Output directory")->required();
  cmd->add_option("--dtype", o->dtype, "Storage type: bf16 (default), f32, fp8")->check(CLI::IsMember({"bf16", "f32", "fp8"}));
  cmd->add_option("--seed", o->seed, "Random seed");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] {
    const std::string text = read_text_file(o->config);
    ModelConfig c = parse_hf_config(text, o->config);
    RandomCheckpointOptions opt;
    opt.dtype = o->dtype == "f32" ? DType::F32 : o->dtype == "fp8" ? DType::F8_E4M3 : DType::BF16;
    opt.seed = o->seed;
    ThreadPool pool(o->threads);
    write_random_checkpoint(text, c, o->out, opt, pool);
  });
}

}  // namespace whale
