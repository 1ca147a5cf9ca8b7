// The `whale` subcommands. Each registers its flags on the CLI11 app and runs from a
// callback; errors are whale::Error exceptions, reported by main() as one line.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/token_list.h"
#include "model/model.h"

namespace whale {

// A model argument: a path, or empty/"default" for the embedded default model.
std::string resolve_model(const std::string& name);
// Whether a path is the embedded default model (so the name "default" also names it).
bool is_default_model(const std::string& path);

// The options of the commands that load a model: --load (core/mmap.h's LoadMode by name) and
// --numerics (model/config.h's CacheNumerics; "auto" keeps the model's own default).
inline void add_load_option(CLI::App* cmd, std::string& load, std::string& numerics) {
  cmd->add_option("--load", load, "How weights reach memory: auto (default: copied when they fit in available memory, else mapped), mmap, copy")
      ->check(CLI::IsMember({"auto", "mmap", "copy"}));
  cmd->add_option("--numerics", numerics,
                  "Caches of models whose official code quantizes them (DeepSeek-V3.2, V4): official (default: FP8 / FP4 as DeepSeek "
                  "runs them) or float (float32, as Hugging Face transformers)")
      ->check(CLI::IsMember({"auto", "official", "float"}));
}
inline void apply_numerics(Model& model, const std::string& numerics) {
  if (numerics != "auto") model.set_cache_numerics(parse_cache_numerics(numerics));
}

// The KV cache's lower tiers (runtime/kv_store.h): --kv-ram, --kv-disk, --kv-disk-size.
struct KVStoreFlags {
  std::string ram = "0", disk, disk_size = "0";
};
void add_kv_store_options(CLI::App* cmd, KVStoreFlags& flags, const std::string& disk_default_help);
// The store the flags ask for; null when they ask for no tier ("--kv-disk off" or none).
std::shared_ptr<class KVStore> make_kv_store(const KVStoreFlags& flags);
// $WHALE_CACHE_DIR, else $XDG_CACHE_HOME/whale, else ~/.cache/whale.
std::string user_cache_dir();

void register_logits(CLI::App& app);
void register_generate(CLI::App& app);
void register_init(CLI::App& app);
void register_info(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_run(CLI::App& app);
void register_bench(CLI::App& app);
void register_plan(CLI::App& app);
void register_convert(CLI::App& app);  // convert and quantize
void register_serve(CLI::App& app);
void register_train(CLI::App& app);
void register_grpo(CLI::App& app);
void register_train_bench(CLI::App& app);
void register_report(CLI::App& app);
void register_data(CLI::App& app);       // data gen
void register_tokenizer(CLI::App& app);  // tokenizer train
void register_eval(CLI::App& app);
void register_store(CLI::App& app);  // pull, list, rm, show

// Keeps freed memory in the heap (training steps free and reallocate the same buffers).
void keep_freed_memory();

}  // namespace whale
