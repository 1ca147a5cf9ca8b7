#!/usr/bin/env python3
"""Renders conversations with DeepSeek's official chat templates into golden fixtures.

    pip install transformers jinja2
    python3 tests/chat/make_chat_golden.py TEMPLATE_DIR

TEMPLATE_DIR holds copies of the official templates, which are not part of this repository:
  deepseek-r1.jinja     chat_template of deepseek-ai/DeepSeek-R1 (tokenizer_config.json)
  deepseek-v3.1.jinja   chat_template of deepseek-ai/DeepSeek-V3.1
  encoding_dsv32.py     encoding/encoding_dsv32.py of deepseek-ai/DeepSeek-V3.2
  encoding_dsv4.py      encoding/encoding_dsv4.py of deepseek-ai/DeepSeek-V4-Flash (reasoning efforts
                        None / "high" / "max", "max" prepending the "Absolute maximum" paragraph)
With --only v4, only the V4 cases are rebuilt (the others are kept from golden.json), so only
encoding_dsv4.py is needed.
The V3 template is read from ../shared/tokenizers/deepseek-v3/tokenizer_config.json.
Jinja templates are compiled by transformers' own chat-template compiler (its sandboxed jinja2
environment with trim_blocks/lstrip_blocks) and rendered with the messages exactly as an
OpenAI-style client sends them (assistant tool-call turns with "content": null); V3.2 by
DeepSeek's own encode_messages. Output: tests/chat/golden.json.
"""
import copy
import importlib.util
import json
import os
import sys

from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_V3 = os.path.join(HERE, "..", "..", "..", "shared", "tokenizers", "deepseek-v3")


def call(name, args, cid="call_0"):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                     "days": {"type": "integer"}}, "required": ["city"]}}}
CALC_TOOL = {"type": "function", "function": {
    "name": "calc", "description": "Evaluate arithmetic", "parameters": {"type": "object", "properties": {
        "expr": {"type": "string"}, "precision": {"type": "number"}, "flags": {"type": "array"}}}}}

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is 2+2?"}],
    "two_systems": [{"role": "system", "content": "Rule one."}, {"role": "system", "content": "Rule two."},
                    {"role": "user", "content": "Hi"}],
    "multi_turn": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Name a color."},
                   {"role": "assistant", "content": "Blue."},
                   {"role": "user", "content": "Another?"}],
    "multi_turn_reasoning_in_content": [
        {"role": "user", "content": "What is 3*7?"},
        {"role": "assistant", "content": "<think>\n3*7=21\n</think>\n\n21"},
        {"role": "user", "content": "And 3*8?"}],
    "unicode": [{"role": "user", "content": "你好！¿Qué tal? 👋 <b>bold</b>\n\tindent"}],
    "tool_call_roundtrip": [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Paris"})]},
        {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\": 21}"},
        {"role": "assistant", "content": "It is 21°C in Paris."},
        {"role": "user", "content": "Thanks!"}],
    "parallel_tool_calls": [
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Paris"}, "a"),
                                                               call("get_weather", {"city": "Tokyo", "days": 2}, "b")]},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "b", "content": "rain"}],
}


def content_and_tool_calls():
    return [{"role": "user", "content": "Compute 1/3."},
            {"role": "assistant", "content": "Let me compute.",
             "tool_calls": [call("calc", {"expr": "1/3", "precision": 0.001, "flags": ["a", 1, True, None]})]},
            {"role": "tool", "tool_call_id": "call_0", "content": "0.333"}]


def v32_conversations():
    """V3.2 carries tools and response_format on the system message, reasoning in reasoning_content."""
    convs = {k: copy.deepcopy(v) for k, v in CONVERSATIONS.items() if k != "multi_turn_reasoning_in_content"}
    convs["reasoning_content_history"] = [
        {"role": "user", "content": "What is 3*7?"},
        {"role": "assistant", "content": "21", "reasoning_content": "3*7=21"},
        {"role": "user", "content": "And 3*8?"}]
    convs["tools_in_system"] = [
        {"role": "system", "content": "You can use tools.", "tools": [WEATHER_TOOL, CALC_TOOL]},
        {"role": "user", "content": "Weather in Paris?"}]
    convs["tool_turn_with_reasoning"] = [
        {"role": "system", "content": "", "tools": [WEATHER_TOOL]},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "reasoning_content": "I should call the tool.",
         "tool_calls": [call("get_weather", {"city": "Paris", "days": 3})]},
        {"role": "tool", "content": "sunny"}]
    convs["content_and_tool_calls"] = content_and_tool_calls()
    convs["response_format"] = [
        {"role": "system", "content": "Reply in JSON.", "response_format": {"type": "json_object"}},
        {"role": "user", "content": "List two fruits."}]
    convs["developer"] = [{"role": "developer", "content": "Answer tersely.", "tools": [CALC_TOOL]},
                          {"role": "user", "content": "ok"}]
    return convs


def v4_conversations():
    """V4: tool results merge into user turns (in call order), user turns merge, tools keep reasoning."""
    convs = v32_conversations()
    convs["results_out_of_order"] = [
        {"role": "system", "content": "", "tools": [WEATHER_TOOL]},
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"role": "assistant", "content": "", "reasoning_content": "Two calls.",
         "tool_calls": [call("get_weather", {"city": "Paris"}, "a"), call("get_weather", {"city": "Tokyo"}, "b")]},
        {"role": "tool", "tool_call_id": "b", "content": "rain"},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "user", "content": "And tomorrow?"}]
    convs["reasoning_history_dropped"] = [
        {"role": "user", "content": "What is 3*7?"},
        {"role": "assistant", "content": "21", "reasoning_content": "3*7=21"},
        {"role": "user", "content": "And 3*8?"},
        {"role": "assistant", "content": "24", "reasoning_content": "3*8=24"},
        {"role": "user", "content": "And 3*9?"}]
    convs["raw_arguments"] = [
        {"role": "user", "content": "Run it."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "calc", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "x", "content": "ok"}]
    return convs


def v4_cases(tdir):
    spec = importlib.util.spec_from_file_location("encoding_dsv4", os.path.join(tdir, "encoding_dsv4.py"))
    dsv4 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dsv4)
    cases = []
    for name, messages in v4_conversations().items():
        for thinking, effort in ((False, None), (True, None), (True, "high"), (True, "max")):
            mode = "thinking" if thinking else "chat"
            try:
                text = dsv4.encode_messages(copy.deepcopy(messages), thinking_mode=mode, reasoning_effort=effort)
            except (AssertionError, NotImplementedError):
                continue
            case = {"format": "v4", "name": name, "add_generation_prompt": True, "thinking": thinking,
                    "messages": messages, "expected": text}
            if effort:
                case["reasoning_effort"] = effort
            cases.append(case)
    return cases


def main():
    if "--only" in sys.argv:
        i = sys.argv.index("--only")
        assert sys.argv[i + 1] == "v4", "only the v4 cases can be rebuilt alone"
        del sys.argv[i:i + 2]
        tdir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/templates"
        path = os.path.join(HERE, "golden.json")
        cases = [c for c in json.load(open(path, encoding="utf-8"))["cases"] if c["format"] != "v4"] + v4_cases(tdir)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"cases": cases}, f, ensure_ascii=False, indent=1)
        print(f"{len(cases)} cases")
        return
    tdir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/templates"
    tok = AutoTokenizer.from_pretrained(SHARED_V3)
    templates = {
        "v3": tok.chat_template,
        "r1": open(os.path.join(tdir, "deepseek-r1.jinja"), encoding="utf-8").read(),
        "v3.1": open(os.path.join(tdir, "deepseek-v3.1.jinja"), encoding="utf-8").read(),
    }
    compiled = {fmt: _compile_jinja_template(t) for fmt, t in templates.items()}
    spec = importlib.util.spec_from_file_location("encoding_dsv32", os.path.join(tdir, "encoding_dsv32.py"))
    dsv32 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dsv32)

    cases = []
    jinja_convs = dict(CONVERSATIONS, content_and_tool_calls=content_and_tool_calls())
    for fmt, template in templates.items():
        for name, messages in jinja_convs.items():
            if fmt == "v3" and name == "content_and_tool_calls":
                continue  # the V3 template drops tool calls when content is set; covered by the others
            for gen in (True, False):
                for thinking in ((False, True) if fmt == "v3.1" else (False,)):
                    if not gen and messages[-1]["role"] != "assistant" and name not in ("single_user", "tool_call_roundtrip"):
                        continue
                    text = compiled[fmt].render(messages=copy.deepcopy(messages), bos_token=tok.bos_token,
                                                eos_token=tok.eos_token, add_generation_prompt=gen, thinking=thinking)
                    cases.append({"format": fmt, "name": name, "add_generation_prompt": gen, "thinking": thinking,
                                  "messages": messages, "expected": text})
    for name, messages in v32_conversations().items():
        for thinking in (False, True):
            mode = "thinking" if thinking else "chat"
            try:
                text = dsv32.encode_messages(copy.deepcopy(messages), thinking_mode=mode)
            except AssertionError:
                continue  # the encoder rejects e.g. assistant turns without reasoning in thinking mode
            cases.append({"format": "v3.2", "name": name, "add_generation_prompt": True, "thinking": thinking,
                          "messages": messages, "expected": text})
    cases += v4_cases(tdir)
    with open(os.path.join(HERE, "golden.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False, indent=1)
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
