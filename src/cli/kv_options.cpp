// The flags of the KV cache's lower tiers, shared by `run` and `serve`.
#include <cstdlib>

#include "cli/commands.h"
#include "runtime/kv_store.h"

namespace whale {

void add_kv_store_options(CLI::App* cmd, KVStoreFlags& f, const std::string& disk_default_help) {
  cmd->add_option("--kv-ram", f.ram, "RAM tier of the KV cache, in bytes (e.g. 4G; default 0: none)");
  cmd->add_option("--kv-disk", f.disk, "Disk tier of the KV cache: a directory kept across restarts (" + disk_default_help + ")");
  cmd->add_option("--kv-disk-size", f.disk_size, "Largest size of the disk tier (e.g. 20G; default: 64G or half the free space)");
}

std::shared_ptr<KVStore> make_kv_store(const KVStoreFlags& f) {
  KVStoreOptions o;
  o.ram_bytes = parse_byte_size(f.ram, "--kv-ram");
  o.disk_bytes = parse_byte_size(f.disk_size, "--kv-disk-size");
  if (f.disk != "off" && f.disk != "none") o.disk_dir = f.disk;
  if (o.ram_bytes == 0 && o.disk_dir.empty()) return nullptr;
  return std::make_shared<KVStore>(o);
}

std::string user_cache_dir() {
  if (const char* d = std::getenv("WHALE_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/whale";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/whale";
}

}  // namespace whale
