// whale: run, serve and train DeepSeek-architecture models.
#include <malloc.h>

#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  // Step buffers (logits, activations) are freed and reallocated every token; keep them in
  // the heap instead of fresh zeroed mmap pages each time (page clearing cost ~10% of decode).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  CLI::App app{"whale: an engine for DeepSeek-architecture models (MLA, DeepSeekMoE, MTP, mHC)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "whale 0.1.0");
  whale::register_logits(app);
  whale::register_generate(app);
  whale::register_init(app);
  whale::register_info(app);
  whale::register_tokenize(app);
  whale::register_run(app);
  whale::register_bench(app);
  whale::register_plan(app);
  whale::register_convert(app);
  whale::register_serve(app);
  whale::register_train(app);
  whale::register_grpo(app);
  whale::register_train_bench(app);
  whale::register_report(app);
  whale::register_data(app);
  whale::register_tokenizer(app);
  whale::register_eval(app);
  whale::register_store(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is success; usage errors exit 2
  } catch (const whale::Error& e) {
    std::fprintf(stderr, "whale: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "whale: error: out of memory\n");
    return 1;
  }
  return 0;
}
