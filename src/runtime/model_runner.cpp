#include "runtime/model_runner.h"

#include "core/error.h"

namespace whale {

ModelRunner::ModelRunner(Model& model, KVCacheManager& cache, const EngineConfig& config)
    : model_(model), cache_(cache), config_(config) {
  if (config.draft > 0 && model.mtp_modules() == 0)
    fail("this model has no MTP module (", model.config().shared_kv() ? "mtp.0.e_proj.weight" : "model.layers." +
         std::to_string(model.config().num_hidden_layers) + ".eh_proj.weight", " is missing); speculative decoding with --spec mtp needs one");
}

StepResult& ModelRunner::execute(const StepPlan& plan) {
  const int64_t V = model_.config().vocab_size, D = model_.mtp_hidden_width();
  if (drafting()) propose(plan);
  StepResult& r = result_;
  r.vocab = V;
  r.first_token.clear();
  r.first_row.clear();
  r.n_rows.clear();
  Batch batch;
  int64_t rows = 0;
  for (const PlannedChunk& c : plan.chunks) {
    Sequence& s = *c.seq;
    r.first_token.push_back(int64_t(batch.tokens.size()));
    r.first_row.push_back(rows);
    if (c.decode) {
      tokens_.assign(1, s.next);
      tokens_.insert(tokens_.end(), s.drafts.begin(), s.drafts.end());
      WHALE_CHECK(int64_t(tokens_.size()) == c.n_tokens, "runner: ", s.drafts.size(), " drafts for a chunk of ", c.n_tokens);
      batch.add(&s.cache, tokens_.data(), c.n_tokens, /*logits_for_last_only=*/false);
      batch.seqs.back().form = AttentionForm::Absorbed;
      r.n_rows.push_back(c.n_tokens);
    } else {
      const int32_t* toks = s.req.prompt.data() + (s.prefilled - c.n_tokens);
      if (c.ends_prompt) {
        batch.add(&s.cache, toks, c.n_tokens);
      } else {  // a middle chunk: no logits needed
        batch.seqs.push_back({&s.cache, int64_t(batch.tokens.size()), c.n_tokens});
        batch.tokens.insert(batch.tokens.end(), toks, toks + c.n_tokens);
      }
      batch.seqs.back().form = AttentionForm::MHA;  // prompt tokens: the same form whatever the chunking
      r.n_rows.push_back(c.ends_prompt ? 1 : 0);
    }
    rows += r.n_rows.back();
  }
  r.logits.resize(size_t(rows * V));
  if (drafting()) r.hidden.resize(batch.tokens.size() * size_t(D));
  const auto t0 = Clock::now();
  model_.forward(batch, cache_.pool(), r.logits.data(), drafting() ? r.hidden.data() : nullptr);
  r.forward_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

void ModelRunner::propose(const StepPlan& plan) {
  const int64_t V = model_.config().vocab_size, D = model_.mtp_hidden_width();
  std::vector<std::pair<Sequence*, int64_t>> drafting;  // sequence, drafts planned
  for (const PlannedChunk& c : plan.chunks) {
    Sequence& s = *c.seq;
    s.drafts.clear();
    if (!c.decode || c.drafts == 0) continue;
    s.mtp.blocks = s.cache.blocks;
    drafting.emplace_back(&s, c.drafts);
  }
  auto pick = [&](Sequence& s, const float* logits) {
    const int64_t position = int64_t(s.decode.output().size() + s.drafts.size());  // in the output
    s.drafts.push_back(config_.proposer ? config_.proposer(position) : argmax(logits, V));
  };
  for (auto [s, want] : drafting) pick(*s, s->draft_logits.data());
  std::vector<float> hidden_in;
  for (;;) {
    Batch b;
    std::vector<Sequence*> in;
    hidden_in.clear();
    for (auto [s, want] : drafting) {
      if (int64_t(s->drafts.size()) >= want) continue;
      b.add(&s->mtp, &s->drafts.back(), 1);
      hidden_in.insert(hidden_in.end(), s->draft_hidden.begin(), s->draft_hidden.end());
      in.push_back(s);
    }
    if (in.empty()) break;
    mtp_logits_.resize(in.size() * size_t(V));
    mtp_hidden_.resize(in.size() * size_t(D));
    model_.mtp_forward(0, b, hidden_in.data(), cache_.pool(), mtp_logits_.data(), mtp_hidden_.data(),
                       model_.mtp_cache_layer());
    for (size_t i = 0; i < in.size(); ++i) {
      in[i]->draft_hidden.assign(&mtp_hidden_[i * size_t(D)], &mtp_hidden_[(i + 1) * size_t(D)]);
      pick(*in[i], &mtp_logits_[i * size_t(V)]);
    }
  }
  for (auto [s, want] : drafting) s->mtp.length = s->cache.length;  // drafted positions are redone from exact states
}

// The MTP module reads position p as (the main model's hidden state at p, the token at p+1):
// after a step every kept position's next token is known (prompt, or the token just chosen).
void ModelRunner::catch_up(const StepPlan& plan) {
  if (!drafting()) return;
  const int64_t V = model_.config().vocab_size, D = model_.mtp_hidden_width();
  const StepResult& r = result_;
  Batch b;
  std::vector<Sequence*> in;
  std::vector<float> hidden_in;
  std::vector<int32_t> toks;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    Sequence& s = *plan.chunks[i].seq;
    const int64_t p0 = s.mtp.length, n = s.cache.length - p0;
    if (s.decode.finished() || n <= 0) continue;
    toks.resize(size_t(n));
    for (int64_t k = 0; k < n; ++k) toks[size_t(k)] = s.token_at(p0 + k + 1);
    s.mtp.blocks = s.cache.blocks;
    const float* h = &r.hidden[size_t(r.first_token[i] * D)];
    hidden_in.insert(hidden_in.end(), h, h + n * D);
    if (s.decoding()) {
      b.add(&s.mtp, toks.data(), n);  // logits of the last position: the next step's first draft
    } else {
      b.seqs.push_back({&s.mtp, int64_t(b.tokens.size()), n});
      b.tokens.insert(b.tokens.end(), toks.begin(), toks.end());
    }
    in.push_back(&s);
  }
  if (b.tokens.empty()) return;
  mtp_logits_.resize(b.logit_rows.size() * size_t(V));
  mtp_hidden_.resize(b.tokens.size() * size_t(D));
  model_.mtp_forward(0, b, hidden_in.data(), cache_.pool(), mtp_logits_.data(), mtp_hidden_.data(),
                     model_.mtp_cache_layer());
  size_t row = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    Sequence& s = *in[i];
    if (!s.decoding()) continue;
    const BatchSeq& q = b.seqs[i];
    s.draft_logits.assign(&mtp_logits_[row * size_t(V)], &mtp_logits_[(row + 1) * size_t(V)]);
    s.draft_hidden.assign(&mtp_hidden_[size_t((q.first + q.n_tokens - 1) * D)], &mtp_hidden_[size_t((q.first + q.n_tokens) * D)]);
    ++row;
  }
}

}  // namespace whale
