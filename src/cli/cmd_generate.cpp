// whale generate --model DIR --tokens 5,17,42 --max-tokens K [--temperature T] [--top-p P] [--seed S]
//                [--spec mtp --draft K]
// Prints the generated ids as a JSON array. Generation stops after K tokens or after an
// end-of-sequence token (which is included, as Hugging Face's generate() does). A thin client
// of the engine, as `serve` is: `--spec mtp` gives the very same ids, seeded sampling included.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/engine.h"

namespace whale {

namespace {
struct GenerateOptions {
  std::string model, tokens, load = "auto", numerics = "auto";
  int64_t max_tokens = 0;
  SamplingParams sampling;
  int threads = 0;
  bool ignore_eos = false;
  std::string spec;
  int draft = 2;
};

void run(const GenerateOptions& o) {
  std::vector<int32_t> prompt = parse_token_list(o.tokens, "--tokens");
  if (!o.spec.empty() && o.spec != "mtp") fail("--spec: only 'mtp' is supported");
  ThreadPool pool(o.threads);
  auto model = Model::load(resolve_model(o.model), pool, parse_load_mode(o.load));
  apply_numerics(*model, o.numerics);
  const ModelConfig& c = model->config();
  check_token_range(prompt, c.vocab_size, "--tokens");
  if (o.max_tokens == 0) {
    std::printf("[]\n");
    return;
  }

  EngineConfig ec;
  ec.parallel = 1;
  ec.ctx = int64_t(prompt.size()) + o.max_tokens;
  ec.prefix_cache = false;
  ec.draft = o.spec.empty() ? 0 : o.draft;
  Engine engine(*model, nullptr, ec);  // token ids only: no tokenizer needed
  EngineRequest r;
  r.prompt = prompt;
  r.options.max_tokens = o.max_tokens;
  r.options.sampling = o.sampling;
  r.options.ignore_eos = o.ignore_eos;
  r.parse = false;
  const RequestOutput out = engine.run(std::move(r));
  if (!out.error.empty()) fail(out.error);
  std::vector<int32_t> ids = out.tokens;
  if (out.stop_token >= 0) ids.push_back(out.stop_token);
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  std::printf("%s]\n", s.c_str());
  if (ec.draft > 0) {
    const EngineMetrics m = engine.metrics();
    std::fprintf(stderr, "mtp: %llu verify steps, acceptance %.1f%%\n", (unsigned long long)m.spec_rounds_total,
                 m.spec_draft_tokens_total ? 100.0 * double(m.spec_accepted_tokens_total) / double(m.spec_draft_tokens_total) : 0.0);
  }
}
}  // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Generate token ids from a prompt of token ids; prints a JSON array");
  cmd->add_option("--model", o->model, "Model directory or GGUF file (\"default\": the embedded model)")->required();
  cmd->add_option("--tokens", o->tokens, "Prompt token ids, comma-separated")->required();
  cmd->add_option("--max-tokens", o->max_tokens, "Number of tokens to generate")->required()->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  cmd->add_option("--temperature", o->sampling.temperature, "0 = greedy (default)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus sampling threshold (default 1)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (default 0 = off)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p sampling (default off)")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--repeat-penalty", o->sampling.repetition_penalty, "Repetition penalty (default 1 = off)")->check(CLI::Range(0.01f, 10.0f));
  cmd->add_option("--seed", o->sampling.seed, "Random seed (default 0)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating after an end-of-sequence token");
  cmd->add_option("--spec", o->spec, "Speculative decoding with the model's MTP module: mtp (the same ids, in fewer steps)");
  cmd->add_option("--draft", o->draft, "Draft tokens per verify step with --spec mtp (default 2)")->check(CLI::Range(1, 8));
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  add_load_option(cmd, o->load, o->numerics);
  cmd->callback([o] { run(*o); });
}

}  // namespace whale
