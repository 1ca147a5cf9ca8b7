// Chat rendering against the official templates' own output (tests/chat/golden.json).
#include "core/error.h"
#include "tokenizer/chat_format.h"
#include "test_util.h"

namespace whale {
namespace {

TEST(ChatFormat, MatchesOfficialTemplates) {
  auto golden = nlohmann::ordered_json::parse(test::read_file(test::source_path("tests/chat/golden.json")));
  size_t n = 0;
  for (const auto& c : golden["cases"]) {
    std::vector<ChatMessage> messages;
    for (size_t i = 0; i < c["messages"].size(); ++i)
      messages.push_back(ChatMessage::from_json(c["messages"][i], "messages[" + std::to_string(i) + "]"));
    ChatOptions o;
    o.add_generation_prompt = c["add_generation_prompt"];
    o.thinking = c["thinking"];
    o.reasoning_effort = c.value("reasoning_effort", "");
    const std::string got = render_chat(parse_chat_format(c["format"]), messages, o);
    EXPECT_EQ(got, c["expected"].get<std::string>()) << c["format"] << " / " << c["name"] << " gen=" << o.add_generation_prompt
                                                     << " thinking=" << o.thinking << " effort=" << o.reasoning_effort;
    ++n;
  }
  EXPECT_GE(n, 60u);
}

TEST(ChatFormat, DetectsTheFormatFromTheTemplate) {
  auto v3 = nlohmann::json::parse(test::read_file(test::deepseek_v3_tokenizer() + "/tokenizer_config.json"));
  EXPECT_EQ(detect_chat_format(v3["chat_template"]), ChatFormat::V3);
  EXPECT_EQ(detect_chat_format("{{'<｜User｜>'}}{{'<｜Assistant｜><think>\\n'}}"), ChatFormat::R1);
  EXPECT_EQ(detect_chat_format("<｜User｜>{% if not thinking %}{{'<｜Assistant｜></think>'}}{% endif %}"), ChatFormat::V31);
  EXPECT_THROW(detect_chat_format(""), Error);  // no template: the user must choose
  EXPECT_THROW(detect_chat_format("{{ '<|im_start|>' }}"), Error);
  EXPECT_EQ(detect_chat_format("", "DeepseekV32ForCausalLM"), ChatFormat::V32);
  EXPECT_THROW(parse_chat_format("v9"), Error);
}

TEST(ChatFormat, PythonJsonDumps) {
  auto j = nlohmann::ordered_json::parse(R"({"b": [1, 2.5, true, null, "é\n"], "a": {"x": 1e-05, "y": 1e16, "z": 0.1}})");
  EXPECT_EQ(python_json_dumps(j), "{\"b\": [1, 2.5, true, null, \"é\\n\"], \"a\": {\"x\": 1e-05, \"y\": 1e+16, \"z\": 0.1}}");
}

TEST(ChatFormat, BadMessagesNameTheField) {
  auto err = [](const char* json) {
    try {
      ChatMessage::from_json(nlohmann::ordered_json::parse(json), "messages[3]");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err(R"({"content": "x"})").find("messages[3].role"), std::string::npos);
  EXPECT_NE(err(R"({"role": "wizard"})").find("unknown role 'wizard'"), std::string::npos);
  EXPECT_NE(err(R"({"role": "user", "content": 5})").find("messages[3].content"), std::string::npos);
  EXPECT_NE(err(R"({"role": "assistant", "tool_calls": [{"function": {"name": 1}}]})").find("tool_calls[0].function.name"),
            std::string::npos);
}

}  // namespace
}  // namespace whale
