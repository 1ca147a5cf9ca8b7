// The `whale logits` / `whale generate` contract, through the real binary.
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "test_util.h"

namespace whale {
namespace {

using test::run_whale;

TEST(Cli, LogitsPrintsOneRowPerPositionMatchingTheReference) {
  auto golden = test::load_golden("v3")[1];
  std::string toks;
  for (size_t i = 0; i < golden.tokens.size(); ++i) toks += (i ? "," : "") + std::to_string(golden.tokens[i]);
  for (const char* prefill : {"9", "0", "4"}) {
    auto r = run_whale({"logits", "--model", test::golden_dir("v3"), "--tokens", toks, "--prefill", prefill, "-t", "2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    auto rows = j.at("logits").get<std::vector<std::vector<float>>>();
    ASSERT_EQ(rows.size(), golden.tokens.size());
    for (size_t i = 0; i < rows.size(); ++i) EXPECT_TRUE(test::logits_close(rows[i], golden.logits[i])) << "prefill " << prefill << " row " << i;
  }
}

TEST(Cli, GenerateGreedyIsArgmaxOfLogits) {
  auto golden = test::load_golden("v2_lite")[1];
  std::string toks;
  for (size_t i = 0; i < golden.tokens.size(); ++i) toks += (i ? "," : "") + std::to_string(golden.tokens[i]);
  auto r = run_whale({"generate", "--model", test::golden_dir("v2_lite"), "--tokens", toks, "--max-tokens", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ids = nlohmann::json::parse(r.out).get<std::vector<int32_t>>();
  ASSERT_EQ(ids.size(), 5u);
  const auto& last = golden.logits.back();
  EXPECT_EQ(ids[0], int32_t(std::max_element(last.begin(), last.end()) - last.begin()));

  // Feeding prompt + generated tokens back through `logits` must reproduce the greedy choices.
  std::string all = toks;
  for (size_t i = 0; i + 1 < ids.size(); ++i) all += "," + std::to_string(ids[i]);
  auto lr = run_whale({"logits", "--model", test::golden_dir("v2_lite"), "--tokens", all});
  auto rows = nlohmann::json::parse(lr.out).at("logits").get<std::vector<std::vector<float>>>();
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& row = rows[golden.tokens.size() - 1 + i];
    EXPECT_EQ(ids[i], int32_t(std::max_element(row.begin(), row.end()) - row.begin())) << "step " << i;
  }
}

TEST(Cli, SamplingIsReproducibleWithASeed) {
  std::vector<std::string> args = {"generate", "--model", test::golden_dir("v3"), "--tokens", "1,2,3",
                                   "--max-tokens", "12", "--temperature", "1.5", "--top-p", "0.95"};
  auto a1 = args, a2 = args, b = args;
  a1.insert(a1.end(), {"--seed", "7"});
  a2.insert(a2.end(), {"--seed", "7"});
  b.insert(b.end(), {"--seed", "8"});
  auto r1 = run_whale(a1), r2 = run_whale(a2), r3 = run_whale(b);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_EQ(r1.out, r2.out);
  EXPECT_NE(r1.out, r3.out);
}

TEST(Cli, BadInputGivesOneClearLineAndNonZeroExit) {
  const std::string model = test::golden_dir("v3");
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  } cases[] = {
      {{"logits", "--model", model, "--tokens", "1,,2"}, "empty entry"},
      {{"logits", "--model", model, "--tokens", "1,x"}, "\"x\" is not a token id"},
      {{"logits", "--model", model, "--tokens", "-1"}, "is not a token id"},
      {{"logits", "--model", model, "--tokens", "99999999999"}, "too large"},
      {{"logits", "--model", model, "--tokens", "1,320"}, "token id 320 (position 1) is out of range: vocab_size is 320"},
      {{"logits", "--model", model, "--tokens", "1,2", "--prefill", "3"}, "--prefill 3 is larger"},
      {{"logits", "--model", "/nonexistent/dir", "--tokens", "1"}, "no config.json"},
      {{"generate", "--model", model, "--tokens", "1"}, "--max-tokens is required"},
  };
  for (const auto& c : cases) {
    auto r = run_whale(c.args);
    EXPECT_NE(r.exit_code, 0) << c.expect;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

}  // namespace
}  // namespace whale

namespace whale {
namespace {

TEST(Cli, BenchAndSpeculativeGenerate) {
  auto r = run_whale({"bench", "--model", test::golden_dir("r2"), "-p", "8", "-n", "8", "-r", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["pp"]["median"].get<double>(), 0);
  EXPECT_GT(j["tg"]["median"].get<double>(), 0);
  EXPECT_GT(j["read_bandwidth_gbs"].get<double>(), 0);
  EXPECT_GT(j["roofline_fraction"].get<double>(), 0);

  r = run_whale({"bench", "--model", test::golden_dir("r2"), "-p", "4", "-n", "6", "-r", "1", "--spec", "mtp", "--draft", "3", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["acceptance_at"].size(), 3u);
  EXPECT_GT(j["speedup"].get<double>(), 0);

  auto plain = run_whale({"generate", "--model", test::golden_dir("r2"), "--tokens", "5,6,7", "--max-tokens", "12"});
  auto spec = run_whale({"generate", "--model", test::golden_dir("r2"), "--tokens", "5,6,7", "--max-tokens", "12", "--spec", "mtp", "--draft", "3"});
  ASSERT_EQ(spec.exit_code, 0) << spec.err;
  EXPECT_EQ(spec.out, plain.out);  // greedy speculation changes nothing but the speed

  r = run_whale({"generate", "--model", test::golden_dir("v3"), "--tokens", "5", "--max-tokens", "2", "--spec", "mtp"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no MTP module"), std::string::npos) << r.err;
  r = run_whale({"generate", "--model", test::golden_dir("r2"), "--tokens", "5", "--max-tokens", "2", "--spec", "mtp", "--draft", "12"});
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
}  // namespace whale

namespace whale {
namespace {

// `whale run --format SCHEMA "prompt"`: the answer validates (an inline schema and a schema
// file); a schema whale cannot enforce is refused before the model loads, naming the keyword.
TEST(CliRun, FormatTakesAJsonSchema) {
  const std::string model = test::source_path("models/whale-r2-tiny");
  const std::string schema =
      R"({"type":"object","properties":{"answer":{"type":"integer","minimum":0,"maximum":2000},"unit":{"enum":["apples","pears"]}},"required":["answer","unit"],"additionalProperties":false})";
  test::TempDir dir;
  const std::string file = dir / "schema.json";
  test::write_file(file, schema);
  for (const std::string& format : {schema, file}) {
    auto r = run_whale({"run", model, "--format", format, "--temperature", "1", "--seed", "3", "--max-tokens", "60", "--json",
                        "What is 347 + 285?"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto out = nlohmann::json::parse(r.out);
    const auto answer = nlohmann::json::parse(out["content"].get<std::string>());
    EXPECT_EQ(answer.size(), 2u) << answer;
    EXPECT_TRUE(answer["answer"].is_number_integer() && answer["answer"] >= 0 && answer["answer"] <= 2000) << answer;
    EXPECT_TRUE(answer["unit"] == "apples" || answer["unit"] == "pears") << answer;
  }
  auto bad = run_whale({"run", model, "--format", R"({"type":"array","uniqueItems":true})", "hi"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--format: #: the keyword 'uniqueItems' is not supported"), std::string::npos) << bad.err;
  auto missing = run_whale({"run", model, "--format", "/nonexistent/schema.json", "hi"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("neither \"json\", a JSON schema nor a readable schema file"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace whale
