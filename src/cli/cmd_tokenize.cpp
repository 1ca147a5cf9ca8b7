// whale tokenize --tokenizer PATH [--jsonl] [--bos]   (text on stdin)
// whale detokenize --tokenizer PATH --ids 1,2,3        (exact bytes on stdout)
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "runtime/model_bundle.h"
#include "tokenizer/tokenizer.h"

namespace whale {

namespace {
struct TokenizeOptions {
  std::string tokenizer, ids;
  bool jsonl = false, bos = false, skip_special = false;
};

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

void run_tokenize(const TokenizeOptions& o) {
  auto tok = load_tokenizer(resolve_model(o.tokenizer));
  if (!o.jsonl) {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    std::printf("{\"ids\": %s}\n", ids_json(tok->encode(text, o.bos)).c_str());
    return;
  }
  std::string line;
  size_t n = 0;
  while (std::getline(std::cin, line)) {
    ++n;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_string()) fail("stdin line ", n, ": expected a JSON string");
    std::printf("%s\n", ids_json(tok->encode(j.get<std::string>(), o.bos)).c_str());
  }
}

void run_detokenize(const TokenizeOptions& o) {
  auto tok = load_tokenizer(resolve_model(o.tokenizer));
  std::vector<int32_t> ids = parse_token_list(o.ids, "--ids");
  for (size_t i = 0; i < ids.size(); ++i)
    if (!tok->is_valid_id(ids[i])) fail("--ids: token id ", ids[i], " (position ", i, ") is not in the vocabulary");
  const std::string text = tok->decode(ids, o.skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
}
}  // namespace

void register_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "Read UTF-8 text on stdin, print {\"ids\": [...]}");
  cmd->add_option("--tokenizer", o->tokenizer, "Model directory or tokenizer.json")->required();
  cmd->add_flag("--jsonl", o->jsonl, "Each stdin line is a JSON string; print one JSON array of ids per line");
  cmd->add_flag("--bos", o->bos, "Prepend the BOS token");
  cmd->callback([o] { run_tokenize(*o); });

  auto* de = app.add_subcommand("detokenize", "Print the exact text of token ids");
  de->add_option("--tokenizer", o->tokenizer, "Model directory or tokenizer.json")->required();
  de->add_option("--ids", o->ids, "Comma-separated token ids")->required();
  de->add_flag("--skip-special", o->skip_special, "Leave out special tokens");
  de->callback([o] { run_detokenize(*o); });
}

}  // namespace whale
