// The `whale` subcommands. Each registers its flags on the CLI11 app and runs from a
// callback; errors are whale::Error exceptions, reported by main() as one line.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace whale {

void register_logits(CLI::App& app);
void register_generate(CLI::App& app);

// "5,17,42" -> ids; rejects empty items, signs, junk and values outside [0, vocab).
std::vector<int32_t> parse_token_list(const std::string& text, const char* flag);
void check_token_range(const std::vector<int32_t>& ids, int64_t vocab, const char* flag);

}  // namespace whale
