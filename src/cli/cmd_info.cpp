// whale info --model DIR : what a checkpoint is, how long it takes to load, what it costs.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/memory_stats.h"
#include "model/model.h"

namespace whale {

namespace {
struct InfoOptions {
  std::string model;
  int threads = 0;
  bool run = false;
};

double mib(int64_t b) { return double(b) / (1 << 20); }
}  // namespace

void register_info(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand("info", "Load a model and print its configuration, load time and memory use");
  cmd->add_option("--model", o->model, "Model directory or GGUF file (\"default\": the embedded model)")->required();
  cmd->add_flag("--run", o->run, "Also run a 4-token forward pass and report memory after it");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] {
    ThreadPool pool(o->threads);
    const auto t0 = std::chrono::steady_clock::now();
    auto model = Model::load(resolve_model(o->model), pool);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const ModelConfig& c = model->config();
    std::printf("architecture     %s\n", c.architecture.c_str());
    std::printf("layers           %lld (first %lld dense)\n", (long long)c.num_hidden_layers,
                (long long)(c.n_routed_experts ? c.first_k_dense_replace : c.num_hidden_layers));
    std::printf("hidden           %lld, heads %lld, q_lora_rank %lld, kv_lora_rank %lld\n", (long long)c.hidden_size,
                (long long)c.num_attention_heads, (long long)c.q_lora_rank, (long long)c.kv_lora_rank);
    if (c.n_routed_experts)
      std::printf("experts          %lld routed (top %lld, %s, %s) + %lld shared\n", (long long)c.n_routed_experts,
                  (long long)c.num_experts_per_tok, to_string(c.scoring_func), to_string(c.topk_method),
                  (long long)c.n_shared_experts);
    std::printf("vocab            %lld\n", (long long)c.vocab_size);
    std::printf("weights          %.1f MiB%s\n", mib(int64_t(model->weights().weight_bytes)), c.fp8 ? " (FP8 blocks)" : "");
    if (c.sparse_attention()) {
      std::printf("sparse attention lightning indexer %lld heads x %lld, top %lld tokens\n", (long long)c.index_n_heads,
                  (long long)c.index_head_dim, (long long)c.index_topk);
      std::printf("kv cache         %lld latent + %lld index-key values per token per layer (%s numerics)\n",
                  (long long)c.kv_cache_dim(), (long long)c.index_head_dim, to_string(c.cache_numerics));
    } else {
      std::printf("kv cache         %lld values per token per layer\n", (long long)c.kv_cache_dim());
    }
    std::printf("threads          %d\n", pool.size());
    std::printf("load time        %.3f s\n", load_s);
    auto report = [](const char* when) {
      MemoryStats m = read_memory_stats();
      std::printf("memory %-9s rss %.1f MiB (anonymous %.1f, file-backed %.1f), peak %.1f MiB\n", when, mib(m.rss_bytes),
                  mib(m.rss_anon_bytes), mib(m.rss_file_bytes), mib(m.peak_rss_bytes));
    };
    report("loaded");
    if (o->run) {
      auto cache = model->make_cache(4);
      SeqCache seq;
      seq.reserve(*cache, 4);
      Batch b;
      const int32_t toks[4] = {0, 1, 2, 3};
      b.add(&seq, toks, 4);
      std::vector<float> logits(static_cast<size_t>(c.vocab_size));
      model->forward(b, *cache, logits.data());
      report("after run");
    }
  });
}

}  // namespace whale
