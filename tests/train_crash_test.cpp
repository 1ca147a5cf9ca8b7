// Training runs survive kills: a kill (the process ends with _exit at a fault point, as kill -9
// would) at every step of the save protocol and of the recovery after it, once or twice in a
// row, and the run always continues from the newest complete checkpoint and ends bit-identical
// to an uninterrupted run, with one metrics row per step. Also: bf16 runs resume, and options
// that would change the run are refused on resume.
#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "train/run_dir.h"

namespace whale::train {
namespace {

class TrainCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = test::run_whale({"data", "gen", "--count", "40", "--thinking", "0.5", "-o", dir_ / "d.jsonl"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = test::run_whale({"tokenizer", "train", dir_ / "d.jsonl", "-o", dir_ / "tok", "--vocab-size", "300"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // 4 steps, a checkpoint after steps 2 and 4; one thread, so every run computes the same bits.
  test::CommandResult train(const std::string& run, const std::string& fault = "", std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"train", "--config", test::golden_dir("r2") + "/config.json", "--tokenizer",
                                     dir_ / "tok", "--data", dir_ / "d.jsonl", "--out", run, "--batch", "2",
                                     "--seq-len", "48", "--warmup", "2", "--lr", "3e-3", "--save-every", "2",
                                     "--log-every", "1", "-t", "1", "-q"};
    if (std::find(extra.begin(), extra.end(), "--steps") == extra.end()) extra.insert(extra.end(), {"--steps", "4"});
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_whale(args, "", fault.empty() ? std::vector<std::string>{} : std::vector<std::string>{"WHALE_FAULT=" + fault});
  }
  struct Result {
    std::string weights, optimizer;
    std::vector<std::pair<int64_t, double>> rows;  // (step, loss) of metrics.jsonl
  };
  Result result(const std::string& run) {
    Result r{test::read_file(run + "/model/model.safetensors"), test::read_file(run + "/model/optimizer.bin"), {}};
    std::istringstream in(test::read_file(run + "/metrics.jsonl"));
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      r.rows.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
    }
    return r;
  }
  void expect_same(const Result& got, const Result& want, const std::string& what) {
    EXPECT_TRUE(got.weights == want.weights) << what << ": weights differ from the uninterrupted run";
    EXPECT_TRUE(got.optimizer == want.optimizer) << what << ": optimizer state differs";
    EXPECT_EQ(got.rows, want.rows) << what << ": metrics rows";
  }
  // The step of the newest complete checkpoint the run directory holds (changing nothing).
  static int64_t newest_checkpoint(const std::string& run) { return RunDir::newest_complete_step(run); }
  test::TempDir dir_;
};

const std::vector<std::string> kSavePoints = {"save:files_written", "save:complete", "save:moved_old",
                                              "save:installed", "save:done", "run:discarded"};
// Whether a kill at `point` during a save comes after that save's checkpoint is complete.
bool after_complete(const std::string& point) { return point != "save:files_written"; }

TEST_F(TrainCrash, AKillAtAnyStepOfASaveResumesFromTheNewestCompleteCheckpoint) {
  ASSERT_EQ(train(dir_ / "ref").exit_code, 0);
  const Result want = result(dir_ / "ref");
  ASSERT_EQ(want.rows.size(), 4u);
  int fired = 0;
  for (const std::string& point : kSavePoints)
    for (int n : {1, 2}) {
      const std::string run = dir_ / ("k-" + std::to_string(fired) + "-" + std::to_string(n));
      const std::string fault = point + ":" + std::to_string(n);
      const auto r = train(run, fault);
      if (r.exit_code == 0) continue;  // this save never reaches the point n times
      ASSERT_EQ(r.exit_code, 137) << fault << ": " << r.err;
      ++fired;
      // Saves happen after steps 2 and 4; moving and discarding model.old happen only in the second.
      const int save = point == "run:discarded" || point == "save:moved_old" ? n + 1 : n;
      const int64_t newest = after_complete(point) ? 2 * save : 2 * (save - 1);
      EXPECT_EQ(newest_checkpoint(run), newest == 0 ? -1 : newest) << fault;
      const auto again = train(run);
      ASSERT_EQ(again.exit_code, 0) << fault << ": " << again.err;
      expect_same(result(run), want, fault);
    }
  EXPECT_GE(fired, 10);
}

TEST_F(TrainCrash, TwoKillsInARowStillResumeFromTheNewestCompleteCheckpoint) {
  ASSERT_EQ(train(dir_ / "ref").exit_code, 0);
  const Result want = result(dir_ / "ref");
  // First kills that leave a checkpoint under a name other than model/ (or model.old about to
  // be removed), then a second kill at every step of the recovery and of the next save.
#ifdef WHALE_SANITIZED  // ten times slower: the two first kills that leave the most to recover
  const std::vector<std::string> first = {"save:moved_old:1", "run:discarded:1"};
#else
  const std::vector<std::string> first = {"save:complete:1", "save:moved_old:1", "save:installed:2", "run:discarded:1"};
#endif
  const std::vector<std::string> second = {"run:recover_moved", "run:recover_installed", "run:discarded",
                                           "save:files_written", "save:complete", "save:moved_old",
                                           "save:installed", "save:done"};
  int case_no = 0, second_fired = 0;
  for (const std::string& f1 : first)
    for (const std::string& f2 : second) {
      const std::string run = dir_ / ("d" + std::to_string(case_no++));
      const auto a = train(run, f1);
      ASSERT_EQ(a.exit_code, 137) << f1 << ": " << a.err;
      const int64_t newest = newest_checkpoint(run);
      const auto b = train(run, f2);
      if (b.exit_code == 137) {
        ++second_fired;
        EXPECT_GE(newest_checkpoint(run), newest) << f1 << " then " << f2 << ": the newest checkpoint was lost";
      } else {
        ASSERT_EQ(b.exit_code, 0) << f1 << " then " << f2 << ": " << b.err;
      }
      const auto c = train(run);
      ASSERT_EQ(c.exit_code, 0) << f1 << " then " << f2 << ": " << c.err;
      expect_same(result(run), want, f1 + " then " + f2);
    }
  EXPECT_GE(second_fired, int(first.size()) * 4);
}

// The two kills the recovery must see through before resuming: a complete model.tmp with no
// model/ (killed between the renames), and that state killed again while recovering it.
TEST_F(TrainCrash, RecoveryKilledHalfwayIsRecoveredAgain) {
  ASSERT_EQ(train(dir_ / "ref").exit_code, 0);
  const Result want = result(dir_ / "ref");
  const std::string run = dir_ / "r";
  ASSERT_EQ(train(run, "save:moved_old:1").exit_code, 137);  // the second save: model.old + complete model.tmp
  EXPECT_FALSE(std::filesystem::exists(run + "/model"));
  EXPECT_TRUE(std::filesystem::exists(run + "/model.tmp/COMPLETE"));
  ASSERT_EQ(train(run, "run:recover_installed").exit_code, 137);
  ASSERT_EQ(train(run).exit_code, 0);
  expect_same(result(run), want, "recovery killed");
}

TEST_F(TrainCrash, Bf16RunsResumeExactly) {
  // Reference: 4 steps in float32, then continued to 6.
  ASSERT_EQ(train(dir_ / "f32").exit_code, 0);
  ASSERT_EQ(train(dir_ / "f32", "", {"--steps", "6"}).exit_code, 0);
  // The same with the first stage's final model written in bf16.
  ASSERT_EQ(train(dir_ / "bf16", "", {"--bf16"}).exit_code, 0);
  EXPECT_LT(std::filesystem::file_size(dir_ / "bf16/model/model.safetensors"),
            std::filesystem::file_size(dir_ / "f32/model/model.safetensors") * 2 / 3);
  const auto r = train(dir_ / "bf16", "", {"--steps", "6"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same(result(dir_ / "bf16"), result(dir_ / "f32"), "bf16 resume");
}

TEST_F(TrainCrash, ResumingWithOptionsThatChangeTheRunIsRefused) {
  const std::string run = dir_ / "o";
  ASSERT_EQ(train(run, "", {"--stop-at", "2"}).exit_code, 0);
  for (const std::vector<std::string>& change :
       {std::vector<std::string>{"--batch", "3"}, {"--seed", "9"}, {"--lr", "1e-3"}, {"--seq-len", "32"}}) {
    const auto r = train(run, "", change);
    EXPECT_NE(r.exit_code, 0) << change[0];
    EXPECT_NE(r.err.find(change[0]), std::string::npos) << r.err;
  }
  const auto r = train(run);  // the same options go on
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace whale::train
