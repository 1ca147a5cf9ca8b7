// A training run's directory, shared by `whale train` and `whale grpo`:
//
//   RUN/model/          the newest checkpoint: an ordinary whale model directory plus
//                       train_state.json (step, the run's options), optimizer.bin (AdamW
//                       state), master/ (float32 weights when model/ was written in bf16)
//                       and COMPLETE (written last)
//   RUN/metrics.jsonl   one JSON row per logged step
//
// Saves survive any sequence of kills: a checkpoint is written whole into model.tmp/ and
// fsynced, then swapped in by renames (model -> model.old, model.tmp -> model, model.old
// removed), each rename fsynced. Opening the run finds the newest complete checkpoint among
// model/, model.tmp/ and model.old/, whichever name it was left under, and renames it to
// model/; so a run always continues from the newest checkpoint that was completely written.
// Metric rows past that checkpoint (logged before a kill, replayed on resume) are dropped.
#pragma once
#include <cstdint>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace whale::train {

class RunDir {
 public:
  // Creates the directory if needed and recovers the newest complete checkpoint as RUN/model.
  explicit RunDir(const std::string& path);

  // The step of the newest complete checkpoint in a run directory, whatever name it was left
  // under (-1: none), without changing anything.
  static int64_t newest_complete_step(const std::string& path);

  const std::string& path() const { return path_; }
  bool has_checkpoint() const { return step_ >= 0; }
  std::string checkpoint() const;  // RUN/model
  int64_t step() const { return step_ < 0 ? 0 : step_; }
  const nlohmann::ordered_json& state() const { return state_; }  // the checkpoint's train_state.json

  // Resuming with options that change the run's meaning is refused, naming the first option
  // whose value differs from the one the run was started with. `options`: flag -> value.
  void check_options(const nlohmann::ordered_json& options) const;

  // Writes the checkpoint of `step`: `write(dir)` fills a fresh directory with the model
  // files; train_state.json ({"step", "options", and `extra`'s fields}) and COMPLETE are added
  // and everything is fsynced before the directory is swapped in.
  void save(int64_t step, const nlohmann::ordered_json& options, const nlohmann::ordered_json& extra,
            const std::function<void(const std::string& dir)>& write);

  // Appends a row to metrics.jsonl (flushed).
  void log(const nlohmann::ordered_json& row);

 private:
  void recover();
  void trim_metrics();

  std::string path_;
  int64_t step_ = -1;  // of the checkpoint; -1: none
  nlohmann::ordered_json state_;
  std::ofstream metrics_;
};

}  // namespace whale::train
