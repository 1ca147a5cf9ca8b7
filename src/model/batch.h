// One forward step's input: new tokens of one or more sequences. Each sequence's tokens
// are appended to its cache at positions cache->length, cache->length + 1, ...
#pragma once
#include <cstdint>
#include <vector>

#include "model/kv_pool.h"

namespace whale {

// MLA has two equivalent forms. MHA decompresses per-head keys and values from the cached
// latents (cheap when many queries share them: prefill); absorbed folds kv_b_proj into the
// query and output so attention runs directly on the 576-wide latents (cheap for decode,
// and computing each token exactly as a one-token decode step would).
enum class AttentionForm { Auto = 0, MHA, Absorbed };

struct BatchSeq {
  SeqCache* cache;    // the sequence's block table; its length grows by n_tokens
  int64_t first = 0;  // index of its first token in Batch::tokens
  int64_t n_tokens = 0;
  // Auto: the batch's choice. The serving engine sets MHA for prompt chunks of any length
  // and Absorbed for generated tokens, so a token's computation never depends on how the
  // prompt was chunked (prefix-cache hits then equal misses bit for bit).
  AttentionForm form = AttentionForm::Auto;
};

struct Batch {
  std::vector<int32_t> tokens;     // [T] all new tokens, sequence after sequence
  AttentionForm attention = AttentionForm::Auto;  // Auto: MHA for chunks, absorbed for single tokens
  std::vector<BatchSeq> seqs;      // consecutive runs of `tokens`
  std::vector<int64_t> logit_rows; // entries of `tokens` whose next-token logits are wanted

  void add(SeqCache* cache, const int32_t* toks, int64_t n, bool logits_for_last_only = true) {
    seqs.push_back({cache, int64_t(tokens.size()), n});
    for (int64_t i = 0; i < n; ++i) {
      if (!logits_for_last_only || i == n - 1) logit_rows.push_back(int64_t(tokens.size()));
      tokens.push_back(toks[i]);
    }
  }
};

}  // namespace whale
