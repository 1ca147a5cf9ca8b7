// The model store's parsers and rules (hub/): the Hub's listing, which files a pull selects,
// names and catalogues, and the store's manifests. The downloads themselves are tested against a
// local mimic of the Hub in tests/hub/test_pull.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "hub/hub_api.h"
#include "hub/pull.h"
#include "hub/store.h"
#include "test_util.h"

namespace whale {
namespace {

using nlohmann::json;

std::string listing(const std::vector<std::string>& paths) {
  json sib = json::array();
  for (const std::string& p : paths) {
    const bool lfs = p.size() > 5 && (p.ends_with(".gguf") || p.ends_with(".safetensors"));
    json s = {{"rfilename", p}, {"size", 10}, {"blobId", std::string(40, 'b')}};
    if (lfs) s["lfs"] = {{"sha256", std::string(64, 'c')}, {"size", 10}};
    sib.push_back(s);
  }
  return json{{"id", "o/n"}, {"sha", std::string(40, 'a')}, {"siblings", sib}}.dump();
}

std::vector<std::string> selected(const std::vector<std::string>& paths, const std::string& quant, std::string* format = nullptr,
                                  std::string* chosen = nullptr) {
  const HubRepo repo = parse_repo_listing(listing(paths), "o/n", "main", "test");
  ModelRef ref;
  ref.repo = "o/n";
  ref.quant = quant;
  std::string fmt;
  std::vector<std::string> out;
  for (const HubFile& f : select_model_files(repo, ref, &fmt)) out.push_back(f.path);
  if (format) *format = fmt;
  if (chosen) *chosen = ref.quant;
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HubListing, RefusesUnsafeNamesAndMissingHashes) {
  for (const char* bad : {"../x.json", "/etc/passwd", "a//b.json", "a/./b.json", "x.safetensors.part", "x.part.log",
                          "whale-manifest.json", "a\\b.json", "tab\t.json"})
    EXPECT_NE(error_of([&] { parse_repo_listing(listing({bad}), "o/n", "main", "t"); }).find("refusing the file name"),
              std::string::npos)
        << bad;
  EXPECT_NO_THROW(parse_repo_listing(listing({"sub/dir/ok..json"}), "o/n", "main", "t"));
  json j = json::parse(listing({"a.json"}));
  j["sha"] = "main";
  EXPECT_NE(error_of([&] { parse_repo_listing(j.dump(), "o/n", "main", "t"); }).find("no commit"), std::string::npos);
  j = json::parse(listing({"a.json"}));
  j["siblings"][0].erase("blobId");
  EXPECT_NE(error_of([&] { parse_repo_listing(j.dump(), "o/n", "main", "t"); }).find("no valid blobId"), std::string::npos);
  EXPECT_NE(error_of([&] { parse_repo_listing("[1]", "o/n", "main", "t"); }).find("not a JSON object"), std::string::npos);
  for (json size : {json(3.2e27), json(-1), json("10"), json(1.5)}) {  // found by fuzz_hub: 3.2e27 did not fit a uint64
    j = json::parse(listing({"m.gguf"}));
    j["siblings"][0]["lfs"]["size"] = size;
    EXPECT_NE(error_of([&] { parse_repo_listing(j.dump(), "o/n", "main", "t"); }).find("has no valid size"), std::string::npos) << size;
  }
  EXPECT_NE(error_of([&] { parse_repo_listing(R"({"sha":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","siblings":[{"size":1}]})", "o/n", "main", "t"); })
                .find("unexpected answer"),
            std::string::npos);
}

TEST(HubSelect, SafetensorsTakesWhatAModelNeeds) {
  std::string format;
  const auto files = selected({"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                               "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                               "LICENSE", "README.md", "inference/model.py", "original/model.safetensors", "figures/a.png",
                               "pytorch_model.bin"},
                              "", &format);
  EXPECT_EQ(format, "safetensors");
  EXPECT_EQ(files, (std::vector<std::string>{"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                             "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
                                             "chat_template.jinja", "LICENSE"}));
  EXPECT_NE(error_of([] { selected({"model.safetensors"}, ""); }).find("no config.json"), std::string::npos);
}

TEST(HubSelect, GgufTagsAreWholeWords) {
  const std::vector<std::string> repo = {"m-Q4_K.gguf", "m-Q4_K_M.gguf", "m-IQ4_XS.gguf", "m-UD-Q2_K_XL.gguf",
                                         "BF16/m-BF16-00001-of-00002.gguf", "BF16/m-BF16-00002-of-00002.gguf",
                                         "mmproj-m-F16.gguf", "mmproj-m-BF16.gguf", "README.md"};
  std::string format, chosen;
  EXPECT_EQ(selected(repo, "Q4_K", &format), (std::vector<std::string>{"m-Q4_K.gguf", "mmproj-m-F16.gguf"}));
  EXPECT_EQ(format, "gguf");
  EXPECT_EQ(selected(repo, "Q4_K_M")[0], "m-Q4_K_M.gguf");
  EXPECT_EQ(selected(repo, "Q2_K_XL")[0], "m-UD-Q2_K_XL.gguf");
  EXPECT_EQ(selected(repo, "XS")[0], "m-IQ4_XS.gguf");
  // A split set with the projector of its own type.
  EXPECT_EQ(selected(repo, "BF16"), (std::vector<std::string>{"BF16/m-BF16-00001-of-00002.gguf", "BF16/m-BF16-00002-of-00002.gguf",
                                                              "mmproj-m-BF16.gguf"}));
  // No tag: Q4_K_M, as llama.cpp defaults.
  EXPECT_EQ(selected(repo, "", nullptr, &chosen)[0], "m-Q4_K_M.gguf");
  EXPECT_EQ(chosen, "Q4_K_M");
  // A file name picks that file.
  EXPECT_EQ(selected(repo, "m-Q4_K.gguf")[0], "m-Q4_K.gguf");
  EXPECT_NE(error_of([&] { selected(repo, "Q5_K_M"); }).find("no GGUF file matches 'Q5_K_M'"), std::string::npos);
  EXPECT_NE(error_of([&] { selected({"a-Q8_0.gguf", "b-Q8_0.gguf"}, "Q8_0"); }).find("matches several GGUF models"), std::string::npos);
  EXPECT_NE(error_of([&] { selected({"a-Q8_0.gguf", "b-F16.gguf"}, ""); }).find("has several GGUF models"), std::string::npos);
  EXPECT_NE(error_of([&] { selected({"m-Q8_0-00001-of-00003.gguf", "m-Q8_0-00003-of-00003.gguf"}, "Q8_0"); }).find("incomplete"),
            std::string::npos);
  EXPECT_NE(error_of([&] { selected({"README.md"}, ""); }).find("no safetensors or GGUF model files"), std::string::npos);
  // One GGUF model without a tag is that model.
  EXPECT_EQ(selected({"only-Q6_K.gguf"}, "", nullptr, &chosen), (std::vector<std::string>{"only-Q6_K.gguf"}));
  EXPECT_EQ(chosen, "only-Q6_K");
}

TEST(HubNames, CatalogueRepositoriesAndPaths) {
  const Catalog c = Catalog::parse(R"({"tiny": {"repo": "a/tiny", "gguf": "a/tiny-GGUF"}, "g": {"gguf": "b/g", "quant": "q6_k"}})", "t");
  auto r = parse_model_name("tiny", c);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo, "a/tiny");
  EXPECT_EQ(r->key(), "a--tiny");
  r = parse_model_name("Tiny:q4_k_m", c);
  EXPECT_EQ(r->repo, "a/tiny-GGUF");
  EXPECT_EQ(r->quant, "Q4_K_M");
  EXPECT_EQ(r->name, "tiny:q4_k_m");
  EXPECT_EQ(r->key(), "a--tiny-GGUF--Q4_K_M");
  r = parse_model_name("g", c);
  EXPECT_EQ(r->repo, "b/g");
  EXPECT_EQ(r->quant, "Q6_K");
  r = parse_model_name("deepseek-v4-flash:q4_k_m", c);  // built-in names stay
  ASSERT_TRUE(r);
  EXPECT_EQ(r->quant, "Q4_K_M");
  r = parse_model_name("owner/repo:q8_0", c);
  EXPECT_EQ(r->name, "owner/repo:Q8_0");
  r = parse_model_name("owner/repo:Model-Q8_0.gguf", c);
  EXPECT_EQ(r->quant, "Model-Q8_0.gguf");
  for (const char* not_a_name : {"./models/x", "/abs/path", "a/b/c", "a/b:", "weights.gguf", "..", "a/..", "no-such-name"})
    EXPECT_FALSE(parse_model_name(not_a_name, c)) << not_a_name;
  EXPECT_NE(error_of([] { Catalog::parse(R"({"x": {"repo": "not a repo"}})", "cat.json"); }).find("cat.json: entry 'x'"),
            std::string::npos);
  EXPECT_NE(error_of([] { Catalog::parse(R"({"x": {"rep": "a/b"}})", "cat.json"); }).find("unknown field \"rep\""), std::string::npos);
  EXPECT_NE(error_of([] { Catalog::parse(R"({"a:b": {"repo": "a/b"}})", "cat.json"); }).find("may not"), std::string::npos);
  EXPECT_NE(error_of([] { Catalog::parse("{", "cat.json"); }).find("not valid JSON"), std::string::npos);
}

TEST(HubStore, ManifestsListFindRemove) {
  TempDir tmp;
  const ModelStore store(tmp.path());
  EXPECT_TRUE(store.list().empty());
  StoredModel m;
  m.key = "o--n--Q8_0";
  m.name = "o/n:Q8_0";
  m.repo = "o/n";
  m.commit = std::string(40, 'a');
  m.quant = "Q8_0";
  m.format = "gguf";
  m.files = {{"mmproj-F16.gguf", 5, std::string(64, 'c'), ""}, {"Q8/n-Q8_0-00001-of-00002.gguf", 7, std::string(64, 'd'), ""},
             {"Q8/n-Q8_0-00002-of-00002.gguf", 7, std::string(64, 'e'), ""}};
  std::filesystem::create_directories(store.model_dir(m.key));
  ModelStore::write_manifest(store.model_dir(m.key), m);
  std::filesystem::create_directories(store.model_dir("damaged"));
  std::ofstream(store.model_dir("damaged") + "/whale-manifest.json") << "{not json";
  const auto all = store.list();
  ASSERT_EQ(all.size(), 1u);  // the damaged one is not a model
  EXPECT_EQ(all[0].bytes, 19u);
  EXPECT_EQ(all[0].model_path(), store.model_dir(m.key) + "/Q8/n-Q8_0-00001-of-00002.gguf");
  const Catalog c = Catalog::parse("{}", "t");
  EXPECT_TRUE(store.find("o/n:Q8_0", c));
  EXPECT_TRUE(store.find("o/n:q8_0", c));
  EXPECT_TRUE(store.find("o/n", c));  // pulled without a tag
  EXPECT_FALSE(store.find("o/m", c));
  store.touch(all[0]);
  EXPECT_GT(store.get(m.key)->last_used, 0);
  EXPECT_TRUE(store.remove(all[0]));
  EXPECT_FALSE(std::filesystem::exists(store.model_dir(m.key)));
  EXPECT_FALSE(store.get(m.key));
  EXPECT_FALSE(store.get("../x"));
}

}  // namespace
}  // namespace whale
