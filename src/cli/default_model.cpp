// The embedded default model (models/whale-r2-tiny, trained by recipes/whale-r2-tiny): the
// model `whale run` and `whale serve` use when none is named, or when it is named "default".
// Looked up beside the binary (../models, ./models: a build tree or an install prefix), then
// in the source tree the binary was built from; WHALE_DEFAULT_MODEL overrides. Any other name
// that is not a path is looked up in the model store (`whale pull`, hub/store.h).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "hub/store.h"

namespace whale {
namespace fs = std::filesystem;

std::string resolve_model(const std::string& name) {
  if (!name.empty() && name != "default") {
    std::error_code ec;
    if (fs::exists(name, ec)) return name;
    const ModelStore store(ModelStore::default_root());
    const Catalog catalog = Catalog::load(store.root());
    if (auto m = store.find(name, catalog)) {
      store.touch(*m);
      return m->model_path();
    }
    bool is_name = false;
    try {
      is_name = parse_model_name(name, catalog).has_value();
    } catch (const Error&) {
      is_name = true;
    }
    if (is_name)
      fail("no model '", name, "': not a file or folder, and not in the model store at ", store.root(), " (`whale pull ", name,
           "` downloads it)");
    return name;  // the loader says what is wrong with the path
  }
  if (const char* env = std::getenv("WHALE_DEFAULT_MODEL"); env && *env) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "../models/whale-r2-tiny");
    candidates.push_back(exe.parent_path() / "models/whale-r2-tiny");
    candidates.push_back(exe.parent_path() / "../share/whale/models/whale-r2-tiny");
  }
#ifdef WHALE_SOURCE_DIR
  candidates.push_back(fs::path(WHALE_SOURCE_DIR) / "models/whale-r2-tiny");
#endif
  for (const fs::path& p : candidates)
    if (fs::exists(p / "config.json", ec)) return fs::weakly_canonical(p, ec).string();
  fail("no model named and the default model (models/whale-r2-tiny) was not found beside the binary; "
       "name a model directory or set WHALE_DEFAULT_MODEL");
}

bool is_default_model(const std::string& path) {
  std::error_code ec;
  try {
    return fs::equivalent(fs::path(path), fs::path(resolve_model("")), ec);
  } catch (const Error&) {
    return false;  // no default model installed
  }
}

}  // namespace whale
