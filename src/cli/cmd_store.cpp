// whale pull NAME | list | rm NAME... | show NAME: the local model store (hub/store.h).
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "hub/pull.h"
#include "hub/store.h"
#include "model/gguf_model.h"
#include "model/hf_config.h"
#include "model/model.h"
#include "runtime/kv_store.h"

namespace whale {

namespace {

std::string duration(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%d:%02d:%02d", int(s / 3600), int(s / 60) % 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%d:%02d", int(s / 60), int(s) % 60);
  return buf;
}

std::string ago(int64_t t) {
  if (t <= 0) return "never";
  const int64_t d = std::max<int64_t>(0, int64_t(std::time(nullptr)) - t);
  if (d < 60) return "just now";
  if (d < 3600) return std::to_string(d / 60) + " min ago";
  if (d < 86400) return std::to_string(d / 3600) + " h ago";
  return std::to_string(d / 86400) + " days ago";
}

// A progress bar on a terminal; plain lines (every 10% or 10 s) otherwise.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::string name) : name_(std::move(name)), tty_(::isatty(2)) {}
  void operator()(const PullProgress& p) {
    if (p.stage == PullProgress::Listing || p.stage == PullProgress::Verifying) return;
    if (p.up_to_date) {
      std::fprintf(stderr, "%s is up to date\n", name_.c_str());
      return;
    }
    if (!announced_) {
      announced_ = true;
      std::fprintf(stderr, "pulling %s: %zu files, %s%s\n", name_.c_str(), p.files.size(), format_bytes(p.total).c_str(),
                   p.resumed ? " (resuming)" : "");
    }
    const double speed = p.seconds > 0.5 ? double(p.fetched) / p.seconds : 0;
    const double pct = p.total ? 100.0 * double(p.done) / double(p.total) : 100;
    const std::string eta = speed > 0 ? duration(double(p.total - p.done) / speed) : "--:--";
    if (tty_) {
      const int width = 30, filled = int(pct / 100 * width);
      std::string bar(size_t(filled), '#');
      bar.resize(width, '-');
      std::fprintf(stderr, "\r%3.0f%% [%s] %s / %s  %s/s  ETA %s   ", pct, bar.c_str(), format_bytes(p.done).c_str(),
                   format_bytes(p.total).c_str(), format_bytes(uint64_t(speed)).c_str(), eta.c_str());
      if (p.stage == PullProgress::Done) std::fprintf(stderr, "\n");
    } else {
      const int decile = int(pct / 10);
      if (p.stage == PullProgress::Downloading && decile <= last_decile_ && p.seconds - last_line_s_ < 10) return;
      last_decile_ = decile;
      last_line_s_ = p.seconds;
      std::fprintf(stderr, "pull: %.0f%% %s of %s, %s/s, ETA %s\n", pct, format_bytes(p.done).c_str(),
                   format_bytes(p.total).c_str(), format_bytes(uint64_t(speed)).c_str(), eta.c_str());
    }
    std::fflush(stderr);
  }

 private:
  std::string name_;
  bool tty_, announced_ = false;
  int last_decile_ = -1;
  double last_line_s_ = -1e9;
};

struct PullFlags {
  std::string name, revision = "main", chunk = "64M";
  int connections = 8;
};

void run_pull(const PullFlags& f) {
  const ModelStore store(ModelStore::default_root());
  const Catalog catalog = Catalog::load(store.root());
  std::optional<ModelRef> ref = parse_model_name(f.name, catalog);
  if (!ref)
    fail("'", f.name, "' is neither a catalogue name (", [&] {
      std::string s;
      for (const auto& [n, e] : catalog.entries()) s += (s.empty() ? "" : ", ") + n;
      return s;
    }(), ") nor a Hugging Face repository (owner/name, owner/name:QUANT)");
  ref->revision = f.revision;
  PullOptions o;
  o.connections = f.connections;
  o.chunk_bytes = parse_byte_size(f.chunk, "--chunk-size");
  signal(SIGXFSZ, SIG_IGN);  // a file-size limit is a write error with a message, not a crash
  ProgressPrinter printer(ref->name);
  const StoredModel m = pull_model(store, *ref, HubClient(), o, [&](const PullProgress& p) { printer(p); });
  std::printf("%s: %s, %s, %s (commit %s)\n", m.name.c_str(), m.format.c_str(), format_bytes(m.bytes).c_str(), m.dir.c_str(),
              m.commit.substr(0, 12).c_str());
}

void run_list() {
  const ModelStore store(ModelStore::default_root());
  const std::vector<StoredModel> models = store.list();
  if (models.empty()) {
    std::printf("no models in %s (`whale pull NAME` downloads one)\n", store.root().c_str());
    return;
  }
  size_t w = 4;
  for (const StoredModel& m : models) w = std::max(w, m.name.size());
  std::printf("%-*s  %10s  %-11s  %-8s  %s\n", int(w), "NAME", "SIZE", "FORMAT", "QUANT", "LAST USED");
  for (const StoredModel& m : models)
    std::printf("%-*s  %10s  %-11s  %-8s  %s\n", int(w), m.name.c_str(), format_bytes(m.bytes).c_str(), m.format.c_str(),
                m.quant.empty() ? "-" : m.quant.c_str(), ago(m.last_used).c_str());
}

StoredModel find_or_fail(const ModelStore& store, const std::string& name) {
  auto m = store.find(name, Catalog::load(store.root()));
  if (!m) fail("no model '", name, "' in the model store at ", store.root(), " (`whale list` shows what is there)");
  return *m;
}

// Total and available memory of this machine, from /proc/meminfo.
std::pair<uint64_t, uint64_t> machine_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t v = 0, total = 0, avail = 0;
  std::string unit;
  while (f >> key >> v >> unit) {
    if (key == "MemTotal:") total = v * 1024;
    if (key == "MemAvailable:") avail = v * 1024;
  }
  return {total, avail};
}

void run_show(const std::string& name) {
  const ModelStore store(ModelStore::default_root());
  std::optional<StoredModel> stored = store.find(name, Catalog::load(store.root()));
  std::string path;
  uint64_t weight_bytes = 0;
  if (stored) {
    const StoredModel& m = *stored;
    path = m.model_path();
    std::printf("name             %s\nrepository       %s (revision %s, commit %s)\n", m.name.c_str(), m.repo.c_str(),
                m.revision.c_str(), m.commit.substr(0, 12).c_str());
    std::printf("format           %s%s%s\nfiles            %zu, %s in %s\n", m.format.c_str(), m.quant.empty() ? "" : " ",
                m.quant.c_str(), m.files.size(), format_bytes(m.bytes).c_str(), m.dir.c_str());
    std::printf("last used        %s\n", ago(m.last_used).c_str());
    weight_bytes = m.bytes;
  } else {
    path = resolve_model(name);  // a path (or the default model)
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(path, ec))
        if (e.is_regular_file(ec) && e.path().extension() == ".safetensors") weight_bytes += e.file_size(ec);
    } else {
      weight_bytes = std::filesystem::file_size(path, ec);
    }
    std::printf("path             %s\n", path.c_str());
  }
  ModelConfig c;
  try {
    if (is_gguf_file(path)) c = gguf_model_config(*GgufFile::open(path));
    else c = load_hf_config(path);
  } catch (const Error& e) {
    std::printf("config           cannot be read by whale: %s\n", e.what());
    return;
  }
  std::printf("architecture     %s, %lld layers, hidden %lld, %lld heads\n", c.architecture.c_str(), (long long)c.num_hidden_layers,
              (long long)c.hidden_size, (long long)c.num_attention_heads);
  if (c.n_routed_experts)
    std::printf("experts          %lld routed (top %lld) + %lld shared\n", (long long)c.n_routed_experts,
                (long long)c.num_experts_per_tok, (long long)c.n_shared_experts);
  std::printf("vocab            %lld, context up to %lld tokens\n", (long long)c.vocab_size, (long long)c.max_position_embeddings);
  const double kv = cache_bytes_per_token(c);
  const auto [total, avail] = machine_memory();
  std::printf("memory           weights %s + KV cache %.1f KiB per token (whale's float32 cache)\n", format_bytes(weight_bytes).c_str(),
              kv / 1024);
  std::printf("this machine     %s RAM, %s available now\n", format_bytes(total).c_str(), format_bytes(avail).c_str());
  for (int64_t ctx : {int64_t(4096), int64_t(32768), int64_t(131072), c.max_position_embeddings}) {
    if (ctx <= 0 || (ctx != 4096 && ctx > c.max_position_embeddings) || (ctx == c.max_position_embeddings && (ctx == 4096 || ctx == 32768 || ctx == 131072)))
      continue;
    const uint64_t need = weight_bytes + uint64_t(kv * double(ctx));
    std::printf("  %7lld tokens  %10s  %s\n", (long long)ctx, format_bytes(need).c_str(),
                need <= avail ? "fits in available memory"
                : need <= total ? "fits in RAM (close other programs)"
                                : "does not fit: weights would be read from disk (mmap), far slower");
  }
}

}  // namespace

void register_store(CLI::App& app) {
  auto f = std::make_shared<PullFlags>();
  auto* pull = app.add_subcommand("pull", "Download a model from the Hugging Face Hub into the model store ($WHALE_MODELS)");
  pull->add_option("name", f->name,
                   "A catalogue name (deepseek-v4-flash, deepseek-v4-flash:q4_k_m, ...), a repository (owner/name) or "
                   "GGUF files of one by quantization (owner/name:Q4_K_M)")
      ->required();
  pull->add_option("--revision", f->revision, "Branch, tag or commit (default main)");
  pull->add_option("--connections", f->connections, "Parallel connections (default 8)")->check(CLI::Range(1, 64));
  pull->add_option("--chunk-size", f->chunk, "Bytes per ranged request, the unit of resuming (default 64M)");
  pull->callback([f] { run_pull(*f); });

  app.add_subcommand("list", "List the models in the model store")->callback(run_list);

  auto names = std::make_shared<std::vector<std::string>>();
  auto* rm = app.add_subcommand("rm", "Delete models from the model store");
  rm->add_option("names", *names, "Store names (as `whale list` shows them)")->required();
  rm->callback([names] {
    const ModelStore store(ModelStore::default_root());
    for (const std::string& n : *names) {
      const StoredModel m = find_or_fail(store, n);
      store.remove(m);
      std::printf("deleted %s (%s)\n", m.name.c_str(), format_bytes(m.bytes).c_str());
    }
  });

  auto show_name = std::make_shared<std::string>();
  auto* show = app.add_subcommand("show", "A model's configuration, its memory needs and whether it fits this machine");
  show->add_option("name", *show_name, "A store name or a model path")->required();
  show->callback([show_name] { run_show(*show_name); });
}

}  // namespace whale
