// llama.cpp's greedy continuation of a prompt of token ids, for bench/crosscheck_llamacpp.sh.
// Built by that script against a llama.cpp checkout outside this repository (libllama's public
// API only):  llamacpp_greedy MODEL.gguf N 0,5,17   prints N greedy token ids, comma-separated,
// then, with LOGITS=1, one line per generated token: the logits it was chosen from.
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include <sstream>
int main(int argc, char** argv) {
  llama_backend_init();
  auto mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 1;
  int n = atoi(argv[2]);
  std::vector<llama_token> toks;
  std::stringstream ss(argv[3]); std::string t;
  while (std::getline(ss, t, ',')) toks.push_back(atoi(t.c_str()));
  auto cp = llama_context_default_params();
  cp.n_ctx = 4096; cp.n_batch = 4096; cp.n_ubatch = 512; cp.n_threads = 2; cp.n_threads_batch = 2;
  llama_context* ctx = llama_init_from_model(model, cp);
  const llama_vocab* vocab = llama_model_get_vocab(model);
  int nv = llama_vocab_n_tokens(vocab);
  llama_batch b = llama_batch_get_one(toks.data(), (int)toks.size());
  if (llama_decode(ctx, b)) return 2;
  std::vector<llama_token> out;
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < n; ++i) {
    float* lg = llama_get_logits_ith(ctx, -1);
    rows.emplace_back(lg, lg + nv);
    int best = 0; for (int k = 1; k < nv; ++k) if (lg[k] > lg[best]) best = k;
    out.push_back(best);
    llama_token tk = best;
    llama_batch one = llama_batch_get_one(&tk, 1);
    if (llama_decode(ctx, one)) return 3;
  }
  for (size_t i = 0; i < out.size(); ++i) printf("%d%c", out[i], i + 1 < out.size() ? ',' : '\n');
  if (getenv("LOGITS"))
    for (const auto& r : rows)
      for (int k = 0; k < nv; ++k) printf("%.9g%c", r[size_t(k)], k + 1 < nv ? ',' : '\n');
  return 0;
}
