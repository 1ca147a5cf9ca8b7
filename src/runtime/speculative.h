// Self-speculative decoding with the model's multi-token-prediction (MTP) module.
//
//   draft   the MTP module proposes k tokens one after another; each step reads the previous
//           draft token and the module's own output state (after shared_head.norm);
//   verify  one main-model forward over [last token, draft_1 .. draft_k], in the absorbed
//           attention form, so every position is computed bit for bit as plain decoding
//           computes it;
//   accept  greedy: the longest prefix equal to the main model's argmax, then its correction;
//           sampling: speculative sampling (accept draft d with probability min(1, p(d)/q(d)),
//           else draw from max(0, p − q)), which keeps the main model's distribution exactly.
// The main model's hidden states of the accepted positions then refill the MTP cache, so the
// next round drafts from exact states.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"

namespace whale {

struct SpecStats {
  int64_t rounds = 0, drafted = 0, accepted = 0, emitted = 0;
  std::vector<int64_t> accepted_at;  // [k]: rounds in which draft i (0-based) was accepted
  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  double tokens_per_round() const { return rounds ? double(emitted) / double(rounds) : 0.0; }
};

// Accepts or rejects one drafted token by speculative sampling; on rejection draws the
// replacement from max(0, p − q). Returns the token to emit and whether the draft stood.
int32_t speculative_accept(const std::vector<float>& p, const std::vector<float>& q, int32_t draft, Sampler& sampler,
                           bool* accepted);

class SpeculativeDecoder {
 public:
  // draft_len: tokens proposed per round (1..8). context: most tokens per sequence.
  SpeculativeDecoder(Model& model, int draft_len, int64_t context);

  // Tokens after `prompt`, as plain decoding with `sampler` would produce them (greedy: the
  // very same tokens). Stops after max_new tokens or at an eos id (which is included), or
  // when on_token returns false.
  std::vector<int32_t> generate(const std::vector<int32_t>& prompt, int64_t max_new, Sampler& sampler,
                                const std::vector<int32_t>& eos_ids, const std::function<bool(int32_t)>& on_token = {});
  const SpecStats& stats() const { return stats_; }

  // Replaces the MTP module's proposals by fixed ones: proposer(i) is the token proposed for
  // the i-th generated position (0-based). With the main model's own greedy continuation this
  // measures the ceiling of speculative decoding (every draft accepted) and exercises the
  // acceptance path in tests; the MTP module still runs, so the cost is the real one.
  void set_proposer(std::function<int32_t(int64_t)> proposer) { proposer_ = std::move(proposer); }

 private:
  std::function<int32_t(int64_t)> proposer_;
  Model& model_;
  int k_;
  int64_t context_;
  std::unique_ptr<KVCache> cache_, mtp_cache_;
  SpecStats stats_;
};

}  // namespace whale
