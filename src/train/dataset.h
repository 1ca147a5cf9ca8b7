// Training data: JSONL files, one example per line, tokenized once at load.
//   {"text": "..."}                                  pretraining: every token is predicted
//   {"messages": [{"role": "user", ...}, {"role": "assistant", "content": ..., "reasoning_content": ...}],
//    "thinking": true|false}                        SFT in the DeepSeek V3.1 chat format: only the
//                                                    assistant's reply (and its end-of-sentence) is predicted
// With thinking on the reply is "<think>"-opened reasoning, "</think>", the answer; with it off
// the prompt already closes the think block and the reply is the answer alone.
// Malformed lines are skipped and counted (the first few reasons are kept for the log).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "train/train_model.h"

namespace whale::train {

struct Example {
  std::vector<int32_t> tokens;
  std::vector<float> weight;  // weight[t]: loss weight of predicting tokens[t]
};

struct DatasetStats {
  int64_t lines = 0, examples = 0, skipped = 0, truncated = 0, tokens = 0;
  std::vector<std::string> errors;  // the first few skipped lines' reasons
};

// Tokens of one chat example: the rendered prompt (V3.1 format, generation prompt with the
// thinking flag) followed by the reply and EOS. `reply_start` receives the prompt length.
std::vector<int32_t> encode_chat_example(const Tokenizer& tok, const std::string& question,
                                         const std::string& reasoning, const std::string& answer, bool thinking,
                                         size_t& reply_start);
// The prompt alone (what generation starts from).
std::string chat_prompt(const std::string& question, bool thinking);

class Dataset {
 public:
  // Reads the files; examples longer than max_len tokens are cut to it (counted).
  Dataset(const std::vector<std::string>& paths, const Tokenizer& tok, int64_t max_len);
  const DatasetStats& stats() const { return stats_; }
  size_t size() const { return examples_.size(); }
  const Example& example(size_t i) const { return examples_[i]; }

  // The batch of global step `step`: B examples in an order that depends only on (seed, step),
  // each epoch a fresh shuffle with examples of similar length batched together; rows
  // right-padded (weight 0) to the longest example. Not thread-safe (caches the epoch plan).
  TrainBatch batch(uint64_t seed, int64_t step, int64_t B) const;

 private:
  const std::vector<size_t>& epoch_plan(uint64_t seed, int64_t epoch, int64_t B) const;

  std::vector<Example> examples_;
  mutable std::vector<size_t> plan_;
  mutable int64_t plan_epoch_ = -1, plan_B_ = 0;
  mutable uint64_t plan_seed_ = 0;
  DatasetStats stats_;
  int32_t pad_id_ = 0;
};

}  // namespace whale::train
