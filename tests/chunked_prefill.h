// Feeds a prompt to a model in chunks (cut at `cuts`, MHA form as the serving engine marks
// prompt chunks) and returns the logits of every position, [n · vocab].
#pragma once
#include <vector>

#include "model/model.h"
#include "test_util.h"

namespace whale::test {

inline std::vector<float> prefill_in_chunks(Model& model, const std::vector<int32_t>& tokens, std::vector<int64_t> cuts) {
  const int64_t n = int64_t(tokens.size()), V = model.config().vocab_size;
  auto cache = model.make_cache(n, 4);
  SeqCache seq;
  EXPECT_TRUE(seq.reserve(*cache, n));
  std::vector<float> all(static_cast<size_t>(n * V));
  cuts.push_back(n);
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    Batch b;
    b.add(&seq, &tokens[size_t(cuts[k])], cuts[k + 1] - cuts[k], false);
    b.seqs.back().form = AttentionForm::MHA;
    model.forward(b, *cache, &all[size_t(cuts[k] * V)]);
  }
  return all;
}

}  // namespace whale::test
