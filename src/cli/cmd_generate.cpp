// whale generate --model DIR --tokens 5,17,42 --max-tokens K [--temperature T] [--top-p P] [--seed S]
// Prints the generated ids as a JSON array. Generation stops after K tokens or after an
// end-of-sequence token (which is included, as Hugging Face's generate() does).
#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"

namespace whale {

namespace {
struct GenerateOptions {
  std::string model, tokens;
  int64_t max_tokens = 0;
  SamplingParams sampling;
  int threads = 0;
  bool ignore_eos = false;
  std::string spec;
  int draft = 2;
};

void run(const GenerateOptions& o) {
  std::vector<int32_t> prompt = parse_token_list(o.tokens, "--tokens");
  ThreadPool pool(o.threads);
  auto model = Model::load(o.model, pool);
  const ModelConfig& c = model->config();
  check_token_range(prompt, c.vocab_size, "--tokens");

  if (!o.spec.empty()) {  // MTP self-speculative decoding: the same tokens as plain decoding (greedy)
    if (o.spec != "mtp") fail("--spec: only 'mtp' is supported");
    SpeculativeDecoder spec(*model, o.draft, int64_t(prompt.size()) + o.max_tokens + o.draft + 2);
    Sampler sampler(o.sampling);
    std::vector<int32_t> eos;
    if (!o.ignore_eos)
      for (int64_t e : c.eos_token_ids) eos.push_back(int32_t(e));
    const auto out = spec.generate(prompt, o.max_tokens, sampler, eos);
    std::string s = "[";
    for (size_t i = 0; i < out.size(); ++i) s += (i ? ", " : "") + std::to_string(out[i]);
    std::printf("%s]\n", s.c_str());
    std::fprintf(stderr, "mtp: %lld verify steps, acceptance %.1f%%\n", (long long)spec.stats().rounds,
                 100 * spec.stats().acceptance_rate());
    return;
  }
  const int64_t total = int64_t(prompt.size()) + o.max_tokens;
  auto cache = model->make_cache(total);
  SeqCache seq;
  if (!seq.reserve(*cache, total)) fail("KV cache too small");
  Sampler sampler(o.sampling);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  std::vector<int32_t> out;

  Batch b;
  b.add(&seq, prompt.data(), int64_t(prompt.size()));
  model->forward(b, *cache, logits.data());
  while (int64_t(out.size()) < o.max_tokens) {
    const int32_t next = sampler.sample(logits.data(), c.vocab_size);
    out.push_back(next);
    const bool eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end();
    if ((eos && !o.ignore_eos) || int64_t(out.size()) == o.max_tokens) break;
    Batch step;
    step.add(&seq, &next, 1);
    model->forward(step, *cache, logits.data());
  }
  std::string s = "[";
  for (size_t i = 0; i < out.size(); ++i) s += (i ? ", " : "") + std::to_string(out[i]);
  std::printf("%s]\n", s.c_str());
}
}  // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Generate token ids from a prompt of token ids; prints a JSON array");
  cmd->add_option("--model", o->model, "Model directory (config.json + *.safetensors)")->required();
  cmd->add_option("--tokens", o->tokens, "Prompt token ids, comma-separated")->required();
  cmd->add_option("--max-tokens", o->max_tokens, "Number of tokens to generate")->required()->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  cmd->add_option("--temperature", o->sampling.temperature, "0 = greedy (default)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling threshold (default 1)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (default 0 = off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", o->sampling.seed, "Random seed (default 0)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating after an end-of-sequence token");
  cmd->add_option("--spec", o->spec, "Speculative decoding with the model's MTP module: mtp");
  cmd->add_option("--draft", o->draft, "Draft tokens per verify step with --spec mtp (default 2)")->check(CLI::Range(1, 8));
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] { run(*o); });
}

}  // namespace whale
