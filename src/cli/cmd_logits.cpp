// whale logits --model DIR --tokens 5,17,42 [--prefill N]
// Prints {"logits": [[...], ...]}: one row of vocabulary logits per input position.
// Positions < N come from one batched prefill of the first N tokens; each later position
// from a one-token decode step on the KV cache.
#include <cmath>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"

namespace whale {

namespace {
struct LogitsOptions {
  std::string model, tokens, numerics = "auto";
  int64_t prefill = -1;
  int threads = 0;
  std::string attention = "auto";
};

void print_rows(const std::vector<float>& data, int64_t rows, int64_t cols) {
  std::string out = "{\"logits\": [";
  char buf[32];
  for (int64_t r = 0; r < rows; ++r) {
    out += r ? ",\n[" : "\n[";
    for (int64_t c = 0; c < cols; ++c) {
      const float v = data[size_t(r * cols + c)];
      if (std::isfinite(v)) std::snprintf(buf, sizeof buf, "%s%.9g", c ? ", " : "", double(v));
      else std::snprintf(buf, sizeof buf, "%snull", c ? ", " : "");
      out += buf;
    }
    out += "]";
  }
  out += "]}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void run(const LogitsOptions& o) {
  std::vector<int32_t> tokens = parse_token_list(o.tokens, "--tokens");
  const int64_t n = int64_t(tokens.size());
  const int64_t prefill = o.prefill < 0 ? n : o.prefill;
  if (prefill > n) fail("--prefill ", prefill, " is larger than the number of tokens (", n, ")");

  ThreadPool pool(o.threads);
  auto model = Model::load(resolve_model(o.model), pool);
  apply_numerics(*model, o.numerics);
  const ModelConfig& c = model->config();
  check_token_range(tokens, c.vocab_size, "--tokens");
  if (o.attention == "mha") model->set_attention_form(AttentionForm::MHA);
  else if (o.attention == "absorbed") model->set_attention_form(AttentionForm::Absorbed);

  auto cache = model->make_cache(n);
  SeqCache seq;
  if (!seq.reserve(*cache, n)) fail("KV cache too small");  // sized above: cannot happen
  std::vector<float> logits(static_cast<size_t>(n * c.vocab_size));
  if (prefill > 0) {
    Batch b;
    b.add(&seq, tokens.data(), prefill, /*logits_for_last_only=*/false);
    model->forward(b, *cache, logits.data());
  }
  for (int64_t i = prefill; i < n; ++i) {
    Batch b;
    b.add(&seq, &tokens[size_t(i)], 1);
    model->forward(b, *cache, &logits[size_t(i * c.vocab_size)]);
  }
  print_rows(logits, n, c.vocab_size);
}
}  // namespace

void register_logits(CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  auto* cmd = app.add_subcommand("logits", "Print the logits of every position of a token sequence as JSON");
  cmd->add_option("--model", o->model, "Model directory or GGUF file (\"default\": the embedded model)")->required();
  cmd->add_option("--tokens", o->tokens, "Comma-separated token ids, e.g. 5,17,42")->required();
  cmd->add_option("--prefill", o->prefill, "Positions < N from one batched prefill, the rest by decode steps (default: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--attention", o->attention, "MLA form: auto (MHA for prefill, absorbed for decode), mha, absorbed")
      ->check(CLI::IsMember({"auto", "mha", "absorbed"}));
  cmd->add_option("--numerics", o->numerics, "Caches of DeepSeek-V3.2 / V4: official (default) or float (as transformers)")
      ->check(CLI::IsMember({"auto", "official", "float"}));
  cmd->callback([o] { run(*o); });
}

}  // namespace whale
