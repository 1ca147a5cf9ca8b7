#include "runtime/speculative.h"

#include <algorithm>

#include "core/error.h"

namespace whale {

int32_t speculative_accept(const std::vector<float>& p, const std::vector<float>& q, int32_t draft, Sampler& sampler,
                           bool* accepted) {
  const double pd = p[size_t(draft)], qd = q[size_t(draft)];
  if (qd > 0 && sampler.uniform() < std::min(1.0, pd / qd)) {
    *accepted = true;
    return draft;
  }
  *accepted = false;
  std::vector<float> residual(p.size());
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) total += (residual[i] = std::max(0.0f, p[i] - q[i]));
  return sampler.draw(total > 0 ? residual : p);
}

SpeculativeDecoder::SpeculativeDecoder(Model& model, int draft_len, int64_t context)
    : model_(model), k_(draft_len), context_(context) {
  if (draft_len < 1 || draft_len > 8) fail("--draft ", draft_len, " is out of range (1..8 tokens per round)");
  if (model.mtp_modules() == 0)
    fail("this model has no MTP module (model.layers.", model.config().num_hidden_layers,
         ".eh_proj.weight is missing); speculative decoding with --spec mtp needs one");
  cache_ = model.make_cache(context);
  mtp_cache_ = model.make_mtp_cache(context);
  stats_.accepted_at.assign(size_t(k_), 0);
}

std::vector<int32_t> SpeculativeDecoder::generate(const std::vector<int32_t>& prompt, int64_t max_new, Sampler& sampler,
                                                  const std::vector<int32_t>& eos_ids,
                                                  const std::function<bool(int32_t)>& on_token) {
  const int64_t V = model_.config().vocab_size, D = model_.config().hidden_size, N = int64_t(prompt.size());
  if (N == 0) fail("empty prompt");
  if (N + max_new + k_ + 1 > context_) fail("prompt + tokens (", N + max_new, ") exceed the context (", context_, ")");
  SeqCache main, mtp;
  std::vector<int32_t> out;
  bool done = false;
  auto emit = [&](int32_t t) {
    if (done) return;
    out.push_back(t);
    ++stats_.emitted;
    if (std::find(eos_ids.begin(), eos_ids.end(), t) != eos_ids.end() || int64_t(out.size()) >= max_new ||
        (on_token && !on_token(t)))
      done = true;
  };
  auto history = [&](const std::vector<int32_t>& extra, size_t n) {  // output so far + the first n drafts
    std::vector<int32_t> h = out;
    h.insert(h.end(), extra.begin(), extra.begin() + long(n));
    return h;
  };

  // Prefill: hidden states of every prompt position (for the MTP module), logits of the last.
  std::vector<float> logits(static_cast<size_t>(V)), hidden(static_cast<size_t>(N * D));
  if (!main.reserve(*cache_, N)) fail("context full");
  constexpr int64_t kChunk = 512;
  for (int64_t i = 0; i < N; i += kChunk) {
    Batch b;
    b.add(&main, &prompt[size_t(i)], std::min(kChunk, N - i));
    model_.forward(b, *cache_, logits.data(), &hidden[size_t(i * D)]);
  }
  std::vector<float> p;
  sampler.probabilities(logits.data(), V, prompt, out, p);
  int32_t last = sampler.greedy() ? int32_t(std::max_element(p.begin(), p.end()) - p.begin()) : sampler.draw(p);
  emit(last);
  if (done) return out;

  // The MTP module over the prompt: position i reads token i+1 and the main hidden state i.
  std::vector<int32_t> next_tokens(prompt.begin() + 1, prompt.end());
  next_tokens.push_back(last);
  std::vector<float> draft_logits(static_cast<size_t>(V)), mtp_hidden(static_cast<size_t>(N * D));
  if (!mtp.reserve(*mtp_cache_, N)) fail("context full");
  for (int64_t i = 0; i < N; i += kChunk) {
    Batch b;
    b.add(&mtp, &next_tokens[size_t(i)], std::min(kChunk, N - i));
    model_.mtp_forward(0, b, &hidden[size_t(i * D)], *mtp_cache_, draft_logits.data(), &mtp_hidden[size_t(i * D)]);
  }
  std::vector<float> draft_hidden(mtp_hidden.end() - D, mtp_hidden.end());

  int64_t L = N;  // main cache length; `last` sits at position L
  std::vector<float> vlogits(static_cast<size_t>((k_ + 1) * V)), vhidden(static_cast<size_t>((k_ + 1) * D));
  while (!done) {
    if (L + k_ + 1 > context_) break;
    // Draft k tokens.
    std::vector<int32_t> drafts;
    std::vector<std::vector<float>> qs(static_cast<size_t>(k_));
    for (int j = 0; j < k_; ++j) {
      sampler.probabilities(draft_logits.data(), V, prompt, history(drafts, drafts.size()), qs[size_t(j)]);
      const auto& q = qs[size_t(j)];
      int32_t d = sampler.greedy() ? int32_t(std::max_element(q.begin(), q.end()) - q.begin()) : sampler.draw(q);
      if (proposer_) {
        d = proposer_(int64_t(out.size()) + j);
        qs[size_t(j)].assign(size_t(V), 0.0f);  // a deterministic proposal: q is one-hot
        qs[size_t(j)][size_t(d)] = 1.0f;
      }
      drafts.push_back(d);
      if (j + 1 == k_) break;
      if (!mtp.reserve(*mtp_cache_, 1)) fail("context full");
      Batch b;
      b.add(&mtp, &drafts.back(), 1);
      std::vector<float> h(static_cast<size_t>(D));
      model_.mtp_forward(0, b, draft_hidden.data(), *mtp_cache_, draft_logits.data(), h.data());
      draft_hidden = h;
    }
    // Verify [last, drafts...] in one main forward, computed exactly as decode steps.
    std::vector<int32_t> verify = {last};
    verify.insert(verify.end(), drafts.begin(), drafts.end());
    if (!main.reserve(*cache_, k_ + 1)) fail("context full");
    Batch vb;
    vb.attention = AttentionForm::Absorbed;
    vb.add(&main, verify.data(), k_ + 1, /*logits_for_last_only=*/false);
    model_.forward(vb, *cache_, vlogits.data(), vhidden.data());

    ++stats_.rounds;
    stats_.drafted += k_;
    int a = 0;
    int32_t correction = -1;
    for (int j = 0; j < k_ && correction < 0; ++j) {
      sampler.probabilities(&vlogits[size_t(j * V)], V, prompt, history(drafts, size_t(j)), p);
      bool accepted;
      int32_t t;
      if (sampler.greedy()) {
        t = int32_t(std::max_element(p.begin(), p.end()) - p.begin());
        accepted = t == drafts[size_t(j)];
      } else {
        t = speculative_accept(p, qs[size_t(j)], drafts[size_t(j)], sampler, &accepted);
      }
      if (accepted) {
        ++a;
        ++stats_.accepted;
        ++stats_.accepted_at[size_t(j)];
      } else {
        correction = t;
      }
    }
    if (correction < 0) {  // every draft stood: the last verified position gives one more token
      sampler.probabilities(&vlogits[size_t(k_ * V)], V, prompt, history(drafts, drafts.size()), p);
      correction = sampler.greedy() ? int32_t(std::max_element(p.begin(), p.end()) - p.begin()) : sampler.draw(p);
    }
    for (int j = 0; j < a; ++j) emit(drafts[size_t(j)]);
    emit(correction);
    if (done) break;

    // Keep last + accepted drafts; redo the MTP positions from the main model's hidden states.
    main.truncate(*cache_, L + a + 1);
    mtp.truncate(*mtp_cache_, L);
    std::vector<int32_t> catch_up(drafts.begin(), drafts.begin() + a);
    catch_up.push_back(correction);
    if (!mtp.reserve(*mtp_cache_, a + 1)) fail("context full");
    Batch mb;
    mb.add(&mtp, catch_up.data(), a + 1);
    std::vector<float> h(static_cast<size_t>((a + 1) * D));
    model_.mtp_forward(0, mb, vhidden.data(), *mtp_cache_, draft_logits.data(), h.data());
    draft_hidden.assign(h.end() - D, h.end());
    L += a + 1;
    last = correction;
  }
  return out;
}

}  // namespace whale
