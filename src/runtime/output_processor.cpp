#include "runtime/output_processor.h"

namespace whale {

namespace {
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
}  // namespace

bool OutputProcessor::accept(Sequence& s, int32_t token, const float* logits, StepStats& stats) {
  const int64_t before = s.decode.stats().generated_tokens;
  const bool alive = s.decode.accept(token, logits);
  if (s.decode.stats().generated_tokens > before) {
    const auto now = Clock::now();
    if (before == 0) {
      stats.ttft.push_back(seconds(s.submitted, now));
      s.first_token = now;
    } else {
      stats.itl.push_back(seconds(s.last_token, now));
    }
    s.last_token = now;
  }
  if (alive) s.next = token;
  return alive;
}

void OutputProcessor::process(const StepPlan& plan, StepResult& r, StepStats& stats) {
  const size_t n = plan.chunks.size();
  chosen_.assign(n, -1);
  pool_.parallel_for(int64_t(n), [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      if (r.n_rows[size_t(i)] == 0) continue;
      DecodeState& d = plan.chunks[size_t(i)].seq->decode;
      float* logits = r.row(r.first_row[size_t(i)]);
      if (d.wants_logprobs()) d.observe(logits);
      chosen_[size_t(i)] = d.choose(logits);
    }
  });
  const auto now = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    const PlannedChunk& c = plan.chunks[i];
    Sequence& s = *c.seq;
    const int64_t rows = r.n_rows[i], first = r.first_row[i];
    if (rows == 0) continue;
    if (c.ends_prompt) s.decode.stats().prefill_seconds = seconds(s.admitted, now);
    bool alive = accept(s, chosen_[i], r.row(first), stats);
    int64_t a = 0;  // drafts accepted
    for (; a < rows - 1 && alive && s.decode.output().back() == s.drafts[size_t(a)]; ++a) {
      float* logits = r.row(first + a + 1);
      if (s.decode.wants_logprobs()) s.decode.observe(logits);
      alive = accept(s, s.decode.choose(logits), logits, stats);
    }
    if (rows > 1) {
      ++stats.spec_rounds;
      stats.spec_drafted += uint64_t(rows - 1);
      stats.spec_accepted += uint64_t(a);
      if (stats.spec_accepted_at.size() < size_t(rows - 1)) stats.spec_accepted_at.resize(size_t(rows - 1), 0);
      for (int64_t j = 0; j < a; ++j) ++stats.spec_accepted_at[size_t(j)];
      cache_.truncate(s.cache, s.cache.length - (rows - 1 - a));  // the refused drafts' entries
    }
  }
}

void OutputProcessor::collect(Sequence& s, StepStats& stats, std::vector<Delivery>& deliveries) {
  if (!s.decode.has_output()) return;
  RequestOutput out = s.decode.take();
  if (out.finished) {
    const auto now = Clock::now();
    GenerationStats& st = out.stats;
    if (st.generated_tokens > 0) {
      st.decode_seconds = seconds(s.first_token, now);
      out.ttft_seconds = seconds(s.submitted, s.first_token);
    }
    ++stats.requests_finished;
    stats.prompt_tokens_finished += uint64_t(st.prompt_tokens);
    stats.cached_tokens_finished += uint64_t(st.cached_tokens);
    stats.cached_ram_tokens_finished += uint64_t(st.cached_ram_tokens);
    stats.cached_disk_tokens_finished += uint64_t(st.cached_disk_tokens);
    stats.generated_tokens_finished += uint64_t(st.generated_tokens);
    stats.e2e.push_back(seconds(s.submitted, now));
  }
  deliveries.push_back({s.handle, std::move(out)});
}

}  // namespace whale
