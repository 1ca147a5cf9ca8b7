#include "train/run_dir.h"

#include <filesystem>
#include <sstream>

#include "core/durable.h"
#include "core/error.h"
#include "core/mmap.h"

namespace whale::train {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

constexpr const char* kCheckpoint = "model";
constexpr const char* kNew = "model.tmp";     // a save being written
constexpr const char* kOld = "model.old";     // the previous checkpoint during a swap
constexpr const char* kTrash = "model.trash"; // being removed: never the newest checkpoint
constexpr const char* kComplete = "COMPLETE"; // written last: the directory is whole

// The step of a complete checkpoint directory, or -1. COMPLETE holds the step; directories
// written before COMPLETE existed count when train_state.json and the weights are there.
int64_t complete_step(const fs::path& dir, json* state) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return -1;
  const bool marked = fs::exists(dir / kComplete, ec);
  if (!marked && (dir.filename() == kNew || !fs::exists(dir / "model.safetensors", ec))) return -1;
  if (!fs::exists(dir / "train_state.json", ec)) return -1;
  json st = json::parse(read_text_file((dir / "train_state.json").string()), nullptr, false);
  if (st.is_discarded() || !st.contains("step") || !st["step"].is_number_integer()) return -1;
  const int64_t step = st["step"].get<int64_t>();
  if (marked && read_text_file((dir / kComplete).string()) != std::to_string(step) + "\n") return -1;
  if (state) *state = std::move(st);
  return step;
}

// Removes a directory that holds nothing needed: renamed to the trash name first (atomic), so
// a kill while deleting never leaves a half-deleted directory under a checkpoint's name.
void discard(const fs::path& run, const char* name) {
  std::error_code ec;
  const fs::path p = run / name, trash = run / kTrash;
  if (!fs::exists(p, ec)) return;
  if (p != trash) {
    fs::remove_all(trash, ec);
    fs::rename(p, trash, ec);
    if (ec) fail(p.string(), ": cannot remove: ", ec.message());
    sync_directory(run.string());
    fault_point("run:discarded");
  }
  fs::remove_all(trash, ec);
  if (ec) fail(trash.string(), ": cannot remove: ", ec.message());
}

void rename_synced(const fs::path& run, const char* from, const char* to) {
  std::error_code ec;
  fs::rename(run / from, run / to, ec);
  if (ec) fail((run / from).string(), ": cannot rename to ", to, ": ", ec.message());
  sync_directory(run.string());
}

}  // namespace

RunDir::RunDir(const std::string& path) : path_(path) {
  std::error_code ec;
  fs::create_directories(path_, ec);
  if (ec) fail(path_, ": cannot create the run directory: ", ec.message());
  recover();
  trim_metrics();
  metrics_.open(fs::path(path_) / "metrics.jsonl", std::ios::app);
  if (!metrics_) fail((fs::path(path_) / "metrics.jsonl").string(), ": cannot write");
}

int64_t RunDir::newest_complete_step(const std::string& path) {
  int64_t best = -1;
  for (const char* name : {kCheckpoint, kOld, kNew}) best = std::max(best, complete_step(fs::path(path) / name, nullptr));
  return best;
}

std::string RunDir::checkpoint() const { return (fs::path(path_) / kCheckpoint).string(); }

// The newest complete checkpoint becomes RUN/model; the others go. Every step keeps the
// newest complete checkpoint under one of the three names, so a kill here is recovered the
// same way on the next start.
void RunDir::recover() {
  const fs::path run(path_);
  discard(run, kTrash);
  const char* best = nullptr;
  for (const char* name : {kCheckpoint, kOld, kNew}) {  // equal steps: the earlier name wins
    json st;
    const int64_t s = complete_step(run / name, &st);
    if (s > step_) {
      step_ = s;
      state_ = std::move(st);
      best = name;
    }
  }
  std::error_code ec;
  if (best && std::string(best) != kCheckpoint) {
    if (fs::exists(run / kCheckpoint, ec)) {
      rename_synced(run, kCheckpoint, kTrash);
      fault_point("run:recover_moved");
    }
    rename_synced(run, best, kCheckpoint);
    fault_point("run:recover_installed");
  }
  for (const char* name : {kOld, kNew, kTrash}) discard(run, name);
}

void RunDir::trim_metrics() {
  const fs::path p = fs::path(path_) / "metrics.jsonl";
  std::error_code ec;
  if (!fs::exists(p, ec)) return;
  std::istringstream in(read_text_file(p.string(), size_t(1) << 30));
  std::string line, kept;
  bool dropped = false;
  while (std::getline(in, line)) {
    json row = json::parse(line, nullptr, false);
    if (!row.is_discarded() && row.is_object() && row.contains("step") && row["step"].is_number_integer() &&
        row["step"].get<int64_t>() > step()) {
      dropped = true;  // logged after the checkpoint: the resumed run logs it again
      continue;
    }
    kept += line + "\n";
  }
  if (!dropped) return;
  const fs::path tmp = p.string() + ".tmp";
  write_file_synced(tmp.string(), kept);
  fs::rename(tmp, p, ec);
  if (ec) fail(p.string(), ": cannot replace: ", ec.message());
  sync_directory(path_);
}

void RunDir::check_options(const json& options) const {
  if (!has_checkpoint() || !state_.contains("options") || !state_["options"].is_object()) return;
  const json& was = state_["options"];
  for (const auto& [flag, value] : options.items()) {
    if (!was.contains(flag) || was[flag] == value) continue;
    fail("resuming ", path_, " (at step ", step(), ") with ", flag, " ", value.dump(), ", but the run was started with ",
         flag, " ", was[flag].dump(), "; give the same value, or a new --out for a new run");
  }
}

void RunDir::save(int64_t step, const json& options, const json& extra,
                  const std::function<void(const std::string&)>& write) {
  const fs::path run(path_), dir = run / kNew;
  std::error_code ec;
  discard(run, kNew);
  fs::create_directories(dir, ec);
  if (ec) fail(dir.string(), ": cannot create: ", ec.message());
  write(dir.string());
  json st = {{"step", step}, {"options", options}};
  for (const auto& [k, v] : extra.items()) st[k] = v;
  write_file_synced((dir / "train_state.json").string(), st.dump(1) + "\n");
  for (const auto& e : fs::recursive_directory_iterator(dir)) {  // whatever write() left unsynced
    if (e.is_regular_file()) sync_file(e.path().string());
    else if (e.is_directory()) sync_directory(e.path().string());
  }
  fault_point("save:files_written");
  write_file_synced((dir / kComplete).string(), std::to_string(step) + "\n");
  sync_directory(dir.string());
  sync_directory(path_);
  fault_point("save:complete");
  if (fs::exists(run / kCheckpoint, ec)) {
    rename_synced(run, kCheckpoint, kOld);
    fault_point("save:moved_old");
  }
  rename_synced(run, kNew, kCheckpoint);
  fault_point("save:installed");
  discard(run, kOld);
  fault_point("save:done");
  step_ = step;
  state_ = std::move(st);
}

void RunDir::log(const json& row) {
  metrics_ << row.dump() << "\n" << std::flush;
  if (!metrics_) fail((fs::path(path_) / "metrics.jsonl").string(), ": write failed");
}

}  // namespace whale::train
