// libFuzzer target: training data and answer checking. The input is read as a JSONL dataset
// (text and chat lines, malformed ones skipped) and as a model's reply to every task's
// checker, including the Countdown expression parser.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "core/error.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/tasks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<whale::Tokenizer> tok = [] {
    whale::BpeTrainOptions o;
    o.vocab_size = 320;
    const auto t = whale::train_bpe({"What is 12 + 34?\n4 + 2 = 6, digit 6\nso the answer is 46"}, o);
    return whale::Tokenizer::from_json(t.tokenizer_json, t.config_json, "fuzz");
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (whale::train::Task task : whale::train::all_tasks()) {
    const whale::train::Problem p = whale::train::make_problem(task, whale::train::Split::Test, 1, int64_t(size % 7));
    whale::train::check_answer(p, text);
  }
  int64_t v = 0;
  whale::train::eval_countdown(text, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 50}, v);

  char path[] = "/tmp/whale-fuzz-data-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return 0;
  const bool ok = write(fd, data, size) == static_cast<ssize_t>(size);
  close(fd);
  if (ok) {
    try {
      whale::train::Dataset d({path}, *tok, 64);
      for (int64_t step = 0; step < 2; ++step) d.batch(1, step, 3);
    } catch (const whale::Error&) {
    }
  }
  unlink(path);
  return 0;
}
