#include "train/evaluate.h"

#include "core/error.h"
#include "runtime/engine.h"
#include "train/dataset.h"

namespace whale::train {

std::vector<TaskAccuracy> evaluate(Model& model, const Tokenizer& tok, const EvalOptions& o) {
  EngineConfig ec;
  ec.parallel = o.parallel;
  ec.ctx = 512 + o.max_tokens;
  ec.prefix_cache = false;
  Engine engine(model, tok, ec);
  std::vector<TaskAccuracy> out;
  for (Task task : o.tasks) {
    std::vector<Problem> problems;
    std::vector<std::shared_ptr<RequestHandle>> handles;
    for (int64_t i = 0; i < o.per_task; ++i) {
      problems.push_back(make_problem(task, Split::Test, o.seed, i));
      EngineRequest r;
      r.prompt = tok.encode(chat_prompt(problems.back().question, o.thinking));
      r.options.max_tokens = o.max_tokens;
      r.options.starts_in_reasoning = o.thinking;
      r.options.tool_syntax = ToolCallSyntax::V31;
      handles.push_back(engine.submit(std::move(r)));
    }
    TaskAccuracy acc{task};
    int64_t tokens = 0;
    for (size_t i = 0; i < handles.size(); ++i) {
      const RequestOutput result = handles[i]->wait_finished();
      if (!result.error.empty()) fail("eval: generation failed: ", result.error);
      // Thinking on: an answer that never closed its think block counts as wrong.
      acc.correct += check_answer(problems[i], result.result.content) ? 1 : 0;
      ++acc.total;
      tokens += result.stats.generated_tokens;
    }
    acc.mean_tokens = acc.total ? double(tokens) / double(acc.total) : 0;
    out.push_back(acc);
  }
  return out;
}

}  // namespace whale::train
