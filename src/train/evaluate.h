// Held-out accuracy: the test split's problems asked in the chat format (thinking on or off),
// answered greedily by the inference engine (continuous batching), checked by the task's
// checker on the answer after the think block.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"
#include "train/tasks.h"

namespace whale::train {

struct TaskAccuracy {
  Task task;
  int64_t correct = 0, total = 0;
  double mean_tokens = 0;  // generated tokens per answer
  double accuracy() const { return total ? double(correct) / double(total) : 0.0; }
};

struct EvalOptions {
  std::vector<Task> tasks;
  int64_t per_task = 100;
  uint64_t seed = 1234;  // which test problems
  bool thinking = true;
  int64_t max_tokens = 256;
  int64_t parallel = 16;
};

std::vector<TaskAccuracy> evaluate(Model& model, const Tokenizer& tok, const EvalOptions& o);

}  // namespace whale::train
