// The byte-level BPE tokenizer against HF `tokenizers` on the real DeepSeek-V3 files.
#include <random>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "test_util.h"

namespace whale {
namespace {

const Tokenizer& v3() {
  static std::unique_ptr<Tokenizer> t = Tokenizer::load(test::deepseek_v3_tokenizer());
  return *t;
}

std::vector<std::string> corpus() {
  std::vector<std::string> out;
  std::istringstream in(test::read_file(test::source_path("tests/tokenizer/corpus.jsonl")));
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line).get<std::string>());
  return out;
}

TEST(Tokenizer, CorpusMatchesHuggingFaceExactly) {
  auto texts = corpus();
  std::istringstream in(test::read_file(test::source_path("tests/tokenizer/expected.jsonl")));
  std::string line;
  ASSERT_GE(texts.size(), 300u);
  for (const auto& text : texts) {
    ASSERT_TRUE(std::getline(in, line));
    EXPECT_EQ(v3().encode(text), nlohmann::json::parse(line).get<std::vector<int32_t>>()) << nlohmann::json(text).dump();
  }
}

TEST(Tokenizer, DecodeOfEncodeIsIdentity) {
  for (const auto& text : corpus()) EXPECT_EQ(v3().decode(v3().encode(text)), text);
}

TEST(Tokenizer, InvalidUtf8IsKeptByteExact) {
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {
    std::string s;
    for (int k = int(rng() % 40); k > 0; --k) {
      switch (rng() % 4) {
        case 0: s += char(rng() % 256); break;                 // any byte
        case 1: s += "\xe4\xbd"; break;                         // truncated 3-byte character
        case 2: s += "\xed\xa0\x80"; break;                     // UTF-8-encoded surrogate
        default: s += "ab \xc3\xa9<\xef\xbd\x9cUser\xef\xbd\x9c>"; break;  // é and <｜User｜>
      }
    }
    EXPECT_EQ(v3().decode(v3().encode(s)), s);
  }
}

TEST(Tokenizer, SpecialTokensAndBos) {
  EXPECT_EQ(v3().bos_id(), 0);
  EXPECT_EQ(v3().eos_id(), 1);
  EXPECT_TRUE(v3().add_bos_default());
  EXPECT_EQ(v3().token_id("<｜User｜>"), 128803);
  EXPECT_EQ(v3().token_id("<｜Assistant｜>"), 128804);
  auto ids = v3().encode("<｜User｜>hi", /*add_bos=*/true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 0);
  EXPECT_EQ(ids[1], 128803);
  EXPECT_TRUE(v3().is_special(0));
  EXPECT_FALSE(v3().is_special(128803));  // added, not special, in DeepSeek-V3's file
  EXPECT_EQ(v3().decode({0, 19923}, /*skip_special=*/true), "Hello");
  EXPECT_FALSE(v3().is_valid_id(128815));  // padding rows of the embedding are not tokens
  EXPECT_THROW(v3().decode({128815}), Error);
}

TEST(Tokenizer, StreamDecoderNeverEmitsPartialCharacters) {
  for (const std::string text : {"你好，世界！", "👨‍👩‍👧‍👦 family", "e\xcc\x81 and \xe0\xa4\x95\xe0\xa5\x8d"}) {
    StreamDecoder dec(v3());
    std::string got;
    for (int32_t id : v3().encode(text)) {
      std::string piece = dec.push(id);
      EXPECT_TRUE(utf8::is_valid(piece)) << "partial UTF-8 emitted for " << text;
      got += piece;
    }
    got += dec.flush();
    EXPECT_EQ(got, text);
  }
  // A byte sequence that can never complete is replaced rather than held forever.
  StreamDecoder dec(v3());
  std::string out;
  for (int32_t id : v3().encode("\xe4\xbd" "A")) out += dec.push(id);
  out += dec.flush();
  EXPECT_TRUE(utf8::is_valid(out));
  EXPECT_NE(out.find('A'), std::string::npos);
}

TEST(Tokenizer, BadFilesNameTheCulprit) {
  test::TempDir dir;
  auto error_of = [&](const std::string& json) {
    test::write_file(dir / "tokenizer.json", json);
    try {
      Tokenizer::load(dir.path());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("{not json").find("tokenizer.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "Unigram", "vocab": []}})").find("'Unigram' is not supported"), std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})").find("merge rank 0"), std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                         "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}})")
                .find("does not compile"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {"a": "x"}}})").find("not an integer"), std::string::npos);
  std::remove((dir / "tokenizer.json").c_str());
  try {
    Tokenizer::load(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer.json"), std::string::npos);
  }
}

TEST(Tokenizer, Cli) {
  const std::string tok = test::deepseek_v3_tokenizer();
  auto r = test::run_whale({"tokenize", "--tokenizer", tok}, "Hello world");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json({19923, 2058}));
  r = test::run_whale({"tokenize", "--tokenizer", tok + "/tokenizer.json", "--bos"}, "Hello world");
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json({0, 19923, 2058}));
  r = test::run_whale({"tokenize", "--tokenizer", tok, "--jsonl"}, "\"a b\"\n\"你好\"\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[67, 291]\n[30594]\n");  // ids from HF tokenizers
  r = test::run_whale({"tokenize", "--tokenizer", tok, "--jsonl"}, "not json\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 1"), std::string::npos);
  r = test::run_whale({"detokenize", "--tokenizer", tok, "--ids", "19923,2058"});
  EXPECT_EQ(r.out, "Hello world");
  r = test::run_whale({"detokenize", "--tokenizer", tok, "--ids", "19923,129000"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("129000"), std::string::npos);
}

}  // namespace
}  // namespace whale
