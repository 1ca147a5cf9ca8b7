// Helpers shared by the tests: temporary directories, running the `whale` binary,
// reading golden fixtures, and the accuracy bar.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace whale::test {

namespace fs = std::filesystem;

inline std::string source_path(const std::string& rel) { return std::string(WHALE_SOURCE_DIR) + "/" + rel; }
inline std::string golden_dir(const std::string& name) { return source_path("tests/golden/" + name); }
// The shared material beside the repository (../shared), e.g. the real DeepSeek-V3 tokenizer.
inline std::string shared_path(const std::string& rel) { return std::string(WHALE_SOURCE_DIR) + "/../shared/" + rel; }
inline std::string deepseek_v3_tokenizer() { return shared_path("tokenizers/deepseek-v3"); }

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "whale-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs the whale binary with shell-quoted arguments; stdin from `input` if given; `env`
// entries (NAME=value) are set for it.
inline CommandResult run_whale(const std::vector<std::string>& args, const std::string& input = "",
                               const std::vector<std::string>& env = {}) {
  TempDir tmp;
  std::string cmd;
  for (const auto& e : env) cmd += "'" + e + "' ";
  if (!env.empty()) cmd = "env " + cmd;
  cmd += std::string("'") + WHALE_BINARY + "'";
  for (const auto& a : args) {
    std::string q;
    for (char c : a) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
    cmd += " '" + q + "'";
  }
  write_file(tmp / "in", input);
  cmd += " <" + tmp / "in" + " >" + tmp / "out" + " 2>" + tmp / "err";
  int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(tmp / "out");
  r.err = read_file(tmp / "err");
  return r;
}

struct GoldenCase {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;               // [position][vocab]
  std::vector<std::vector<std::vector<float>>> layers;  // [layer][position][hidden]: residual after each layer, if given
};

// A golden case directory's references: expected.json, or another file of the same shape
// (expected_official.json: the model's official numerics).
inline std::vector<GoldenCase> load_golden(const std::string& name, const std::string& file = "expected.json") {
  auto j = nlohmann::json::parse(read_file(golden_dir(name) + "/" + file));
  std::vector<GoldenCase> out;
  for (const auto& c : j["cases"]) {
    out.push_back({c["tokens"].get<std::vector<int32_t>>(), c["logits"].get<std::vector<std::vector<float>>>(), {}});
    if (c.contains("layers")) out.back().layers = c["layers"].get<std::vector<std::vector<std::vector<float>>>>();
  }
  return out;
}

// The accuracy bar: max |Δlogit| ≤ 1e-3 × max |reference logit|, per position.
inline ::testing::AssertionResult logits_close(const std::vector<float>& got, const std::vector<float>& ref,
                                               double rel = 1e-3) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, double(std::fabs(ref[i])));
    const double d = std::fabs(double(got[i]) - double(ref[i]));
    if (!(d <= max_diff)) max_diff = std::isnan(d) ? INFINITY : d;
  }
  if (max_diff <= rel * max_ref) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |Δ| " << max_diff << " > " << rel << " × max|ref| " << max_ref;
}

}  // namespace whale::test
