// libFuzzer target: OpenAI-style message JSON -> ChatMessage -> every chat format.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "tokenizer/chat_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::ordered_json::parse(data, data + size, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return 0;
  try {
    std::vector<whale::ChatMessage> msgs;
    for (size_t i = 0; i < j.size(); ++i) msgs.push_back(whale::ChatMessage::from_json(j[i], "messages"));
    for (auto f : {whale::ChatFormat::V3, whale::ChatFormat::R1, whale::ChatFormat::V31, whale::ChatFormat::V32,
                   whale::ChatFormat::V4})
      for (bool thinking : {false, true}) {
        whale::ChatOptions o;
        o.thinking = thinking;
        whale::render_chat(f, msgs, o);
      }
  } catch (const whale::Error&) {
  }
  return 0;
}
