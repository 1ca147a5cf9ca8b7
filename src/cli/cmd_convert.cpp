// whale convert MODEL_DIR OUT.gguf [--type f16]      HF checkpoint -> llama.cpp deepseek2/32/4 GGUF
// whale quantize MODEL_DIR OUT.gguf --type q4_k_m     the same, the type required
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "model/gguf_convert.h"

namespace whale {

namespace {
struct ConvertOptions {
  std::string model, out, type = "f16";
  int threads = 0;
};

void add_convert(CLI::App& app, const char* name, const char* help, bool type_required) {
  auto o = std::make_shared<ConvertOptions>();
  auto* cmd = app.add_subcommand(name, help);
  cmd->add_option("MODEL", o->model, "Hugging Face model directory (config.json, safetensors, tokenizer.json)")->required();
  cmd->add_option("OUT", o->out, "Output .gguf file (written atomically)")->required();
  auto* type = cmd->add_option("--type", o->type, "f32, f16 (default), bf16, q8_0, q4_0, q4_k_m; mxfp4_moe for DeepSeek-V4 (llama.cpp's layout)")
                   ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "mxfp4_moe"}));
  if (type_required) type->required();
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([o] {
    ThreadPool pool(o->threads);
    const bool tty = isatty(fileno(stderr));
    convert_to_gguf(resolve_model(o->model), o->out, parse_gguf_file_type(o->type), pool, [tty](size_t done, size_t total) {
      if (tty) std::fprintf(stderr, "\r[%zu/%zu] tensors%s", done, total, done == total ? "\n" : "");
      else if (done == total || done % std::max<size_t>(1, total / 10) == 0)
        std::fprintf(stderr, "[%zu/%zu] tensors\n", done, total);
    });
  });
}
}  // namespace

void register_convert(CLI::App& app) {
  add_convert(app, "convert", "Write a Hugging Face checkpoint as a llama.cpp deepseek2 GGUF file", false);
  add_convert(app, "quantize", "Quantize a Hugging Face checkpoint into a GGUF file (q8_0, q4_0, q4_k_m, ...)", true);
}

}  // namespace whale
