// Byte-level BPE training: learns merges from text and writes a Hugging Face tokenizer.json
// (DeepSeek-V3's pre-tokenizer, digits split one by one by default so arithmetic is seen
// digit by digit; GPT-2 byte mapping; ByteLevel decoder) plus a tokenizer_config.json with
// the DeepSeek chat special tokens and a V3.1-style chat template with the thinking toggle.
// Both HF `tokenizers` and whale's Tokenizer load the result and agree on every encoding
// (tests/tokenizer/test_trained_tokenizer.py).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace whale {

struct BpeTrainOptions {
  int32_t vocab_size = 1024;   // specials + 256 bytes + merges
  int64_t min_frequency = 2;   // a pair seen fewer times is never merged
  bool split_digits = true;    // one digit per piece (DeepSeek-V3 groups up to three)
};

struct TrainedTokenizer {
  std::string tokenizer_json, config_json;
  int32_t vocab_size = 0, merges = 0;
};

// The DeepSeek special tokens every trained tokenizer carries, ids 0.. in this order.
const std::vector<std::string>& deepseek_special_tokens();

TrainedTokenizer train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& o);

}  // namespace whale
