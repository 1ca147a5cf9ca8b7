"""`whale serve` driven by real clients: the official `openai`, `anthropic` and `ollama` packages and curl.

Usage: python3 tests/server/test_server.py WHALE_BINARY   (ctest runs it)
"""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import anthropic
import ollama
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whale_server import WhaleServer, make_chat_model  # noqa: E402

WHALE = None
MODEL = None
NAME = "tiny-chat"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def client(server, key="none"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def post(url, body, headers=None):
    """(status, parsed JSON or text) for a raw POST."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def curl(*args):
    return subprocess.run(["curl", "-sS", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def collect_stream(stream):
    """reasoning, content, tool calls (id, name, arguments) and finish reason of a streamed chat."""
    reasoning, content, calls, finish, usage = "", "", {}, None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            d = ch.delta
            reasoning += getattr(d, "reasoning_content", None) or ""
            content += d.content or ""
            for tc in d.tool_calls or []:
                c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    c["id"] = tc.id
                if tc.function and tc.function.name:
                    c["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    c["arguments"] += tc.function.arguments
            if ch.finish_reason:
                finish = ch.finish_reason
    return reasoning, content, [calls[i] for i in sorted(calls)], finish, usage


class OpenAIClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.v3 = WhaleServer(WHALE, MODEL, "--parallel", "4", "--ctx", "512").__enter__()
        cls.r1 = WhaleServer(WHALE, MODEL, "--chat-format", "r1", "--ctx", "512", "--alias", "tiny-r1").__enter__()
        cls.v31 = WhaleServer(WHALE, MODEL, "--chat-format", "v3.1", "--ctx", "512", "--reasoning-mirror").__enter__()

    @classmethod
    def tearDownClass(cls):
        for s in (cls.v3, cls.r1, cls.v31):
            s.__exit__(None, None, None)

    def test_chat_non_stream_and_stream_agree(self):
        c = client(self.v3)
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
        r = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=12, temperature=0)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 12)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 12)
        s = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=12, temperature=0, stream=True,
                                      stream_options={"include_usage": True})
        reasoning, content, calls, finish, usage = collect_stream(s)
        self.assertEqual(content, r.choices[0].message.content)
        self.assertEqual(finish, "length")
        self.assertEqual(usage.completion_tokens, 12)

    def test_model_name_is_checked_and_listed(self):
        c = client(self.r1)
        self.assertEqual([m.id for m in c.models.list()], ["tiny-r1"])
        c.chat.completions.create(model="tiny-r1", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        with self.assertRaises(openai.NotFoundError):
            c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}], max_tokens=1)

    def test_reasoning_content_with_thinking_budget(self):
        # R1 always thinks; the budget forces </think> after 6 reasoning tokens, then the answer.
        c = client(self.r1)
        kw = dict(model="tiny-r1", messages=[{"role": "user", "content": "Think about 7*8."}], max_tokens=16,
                  temperature=0, extra_body={"thinking": {"type": "enabled", "budget_tokens": 6}})
        r = c.chat.completions.create(**kw)
        m = r.choices[0].message
        self.assertTrue(m.reasoning_content)
        self.assertTrue(m.content)
        self.assertGreaterEqual(r.usage.completion_tokens_details.reasoning_tokens, 6)
        reasoning, content, _, _, _ = collect_stream(c.chat.completions.create(stream=True, **kw))
        self.assertEqual(reasoning, m.reasoning_content)
        self.assertEqual(content, m.content)

    def test_v31_thinking_toggles(self):
        c = client(self.v31)
        base = dict(model=NAME, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0)
        off = c.chat.completions.create(**base)
        self.assertFalse(getattr(off.choices[0].message, "reasoning_content", None))
        self.assertTrue(off.choices[0].message.content)
        for extra in ({"chat_template_kwargs": {"thinking": True}}, {"thinking": {"type": "enabled"}},
                      {"reasoning_effort": "high"}):
            on = c.chat.completions.create(extra_body=extra, **base)
            msg = on.choices[0].message
            self.assertTrue(msg.reasoning_content, extra)
            self.assertEqual(msg.reasoning, msg.reasoning_content)  # --reasoning-mirror
            self.assertEqual(on.usage.completion_tokens_details.reasoning_tokens, 8)
        again_off = c.chat.completions.create(extra_body={"thinking": {"type": "disabled"}}, **base)
        self.assertEqual(again_off.choices[0].message.content, off.choices[0].message.content)

    def test_interleaved_thinking_history_is_accepted(self):
        c = client(self.v31)
        msgs = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "reasoning_content": "I should call the tool.",
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}]
        r = c.chat.completions.create(model=NAME, messages=msgs, tools=TOOLS, max_tokens=4, temperature=0)
        self.assertEqual(r.usage.completion_tokens, 4)

    def test_forced_tool_call_streams_like_non_stream(self):
        for server in (self.v31, self.v3):
            c = client(server)
            kw = dict(model=NAME, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
                      tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=24, temperature=0)
            r = c.chat.completions.create(**kw)
            calls = r.choices[0].message.tool_calls
            self.assertEqual(len(calls), 1)
            self.assertEqual(calls[0].function.name, "get_weather")
            args = json.loads(calls[0].function.arguments)  # valid under the tool's parameters, closed in time
            self.assertIsInstance(args.get("city"), str, args)
            self.assertTrue(calls[0].id.startswith("call_"))
            _, content, scalls, finish, _ = collect_stream(c.chat.completions.create(stream=True, **kw))
            self.assertEqual([(x["name"], x["arguments"]) for x in scalls],
                             [(t.function.name, t.function.arguments) for t in calls])
            self.assertEqual(content, r.choices[0].message.content or "")
            self.assertEqual(finish, r.choices[0].finish_reason)
            # A max_tokens too small for the shortest call the schema allows is a clear 400.
            with self.assertRaises(openai.BadRequestError) as e:
                c.chat.completions.create(**{**kw, "max_tokens": 6})
            self.assertIn("too small for the shortest tool call", str(e.exception))

    def test_required_tool_choice_names_a_declared_tool(self):
        # At temperature 1 a random model would name anything: the call is still one of the
        # declared tools and its arguments parse, in V3 and V3.1 markup.
        tools = TOOLS + [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
        for server in (self.v3, self.v31):
            c = client(server)
            for seed in range(3):
                r = c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Use a tool."}], tools=tools,
                                              tool_choice="required", max_tokens=40, temperature=1.0, seed=seed)
                calls = r.choices[0].message.tool_calls
                self.assertTrue(calls, r)
                self.assertIn(calls[0].function.name, ("get_weather", "get_time"))
                self.assertIsInstance(json.loads(calls[0].function.arguments), dict)

    def test_logprobs(self):
        r = client(self.v3).chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)
        lp = r.choices[0].logprobs.content
        self.assertEqual(len(lp), 5)
        for t in lp:
            self.assertEqual(len(t.top_logprobs), 3)
            self.assertAlmostEqual(t.logprob, t.top_logprobs[0].logprob, places=5)  # greedy = most likely
            self.assertEqual(bytes(t.bytes).decode("utf-8", "replace"), t.token)

    def test_json_object_mode(self):
        r = client(self.v3).chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "JSON please"}], max_tokens=40, temperature=0.8, seed=3,
            response_format={"type": "json_object"})
        text = r.choices[0].message.content
        self.assertTrue(text.startswith("{"), text)
        if r.choices[0].finish_reason == "stop":
            json.loads(text)

    def test_n_seed_and_stop(self):
        c = client(self.v3)
        msgs = [{"role": "user", "content": "Tell me something."}]
        r = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=8, temperature=1.0, seed=42, n=3)
        self.assertEqual([ch.index for ch in r.choices], [0, 1, 2])
        again = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=8, temperature=1.0, seed=42, n=3)
        self.assertEqual([ch.message.content for ch in r.choices], [ch.message.content for ch in again.choices])
        full = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=8, temperature=0).choices[0].message.content
        stop = full[len(full) // 2:][:2]
        cut = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=8, temperature=0, stop=[stop])
        self.assertEqual(cut.choices[0].finish_reason, "stop")
        self.assertEqual(cut.choices[0].message.content, full[:full.index(stop)])

    def test_prefix_cache_reports_cached_tokens_and_same_answer(self):
        c = client(self.v3)
        msgs = [{"role": "system", "content": "You are a helpful assistant. " * 8}, {"role": "user", "content": "Hi"}]
        a = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=6, temperature=0)
        b = c.chat.completions.create(model=NAME, messages=msgs, max_tokens=6, temperature=0)
        self.assertGreater(b.usage.prompt_tokens_details.cached_tokens, 0)
        self.assertEqual(b.usage.model_extra["prompt_cache_hit_tokens"], b.usage.prompt_tokens_details.cached_tokens)
        self.assertEqual(a.choices[0].message.content, b.choices[0].message.content)

    def test_completions(self):
        c = client(self.v3)
        r = c.completions.create(model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0, logprobs=2)
        self.assertEqual(r.object, "text_completion")
        self.assertEqual(len(r.choices[0].logprobs.tokens), 6)
        text = "".join(ch.choices[0].text for ch in c.completions.create(
            model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0, stream=True) if ch.choices)
        self.assertEqual(text, r.choices[0].text)
        # echo: the prompt, then the completion (streamed: the prompt comes first)
        e = c.completions.create(model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0, echo=True)
        self.assertEqual(e.choices[0].text, "Once upon a time" + r.choices[0].text)
        streamed = "".join(ch.choices[0].text for ch in c.completions.create(
            model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0, echo=True, stream=True) if ch.choices)
        self.assertEqual(streamed, e.choices[0].text)
        with self.assertRaises(openai.BadRequestError):  # prompt logprobs are not computed: refused, not faked
            c.completions.create(model=NAME, prompt="Once", max_tokens=2, echo=True, logprobs=1)

    def test_sixteen_concurrent_requests_equal_alone(self):
        c = client(self.v3)
        prompts = [f"Question {i}: what is {i * 13} plus {i}?" for i in range(16)]
        kw = dict(model=NAME, max_tokens=10, temperature=0)
        alone = [c.chat.completions.create(messages=[{"role": "user", "content": p}], **kw).choices[0].message.content
                 for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            together = list(ex.map(lambda p: c.chat.completions.create(
                messages=[{"role": "user", "content": p}], **kw).choices[0].message.content, prompts))
        self.assertEqual(together, alone)


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = WhaleServer(WHALE, MODEL, "--ctx", "128", "--max-body", "65536").__enter__()
        cls.chat = cls.s.url + "/v1/chat/completions"

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)

    def expect_error(self, body, status, param=None, code=None):
        got, text = post(self.chat, body)
        self.assertEqual(got, status, text)
        err = json.loads(text)["error"]
        self.assertTrue(err["message"])
        self.assertTrue(err["code"] is None or isinstance(err["code"], str), err)  # never a number
        if param:
            self.assertEqual(err["param"], param)
        if code:
            self.assertEqual(err["code"], code)

    def test_malformed_and_mistyped_requests(self):
        self.expect_error(b"{not json", 400)
        self.expect_error(b"[1, 2]", 400)
        self.expect_error(b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400)  # invalid UTF-8
        self.expect_error({"messages": "hello"}, 400, "messages")
        self.expect_error({"messages": []}, 400, "messages")
        self.expect_error({"messages": [{"role": "wizard", "content": "x"}]}, 400)
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400, "temperature")
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}, 400, "max_tokens")
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "n": 1000}, 400, "n")
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream")
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "model": "nope"}, 404, "model")
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, 400)
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": 5, "function": {}}]}, 400)
        self.expect_error({"messages": [{"role": "user", "content": [{"type": 5, "text": "x"}]}]}, 400)
        self.expect_error({"messages": [{"role": "user", "content": "x"}],
                           "tools": [{"type": "function", "function": {"name": "bad name!"}}]}, 400)
        self.expect_error({"messages": [{"role": "user", "content": "x"}], "tools": TOOLS,
                           "tool_choice": {"type": "function", "function": {"name": "other"}}}, 400, "tool_choice")
        self.expect_error({"messages": [{"role": "user", "content": "word " * 300}]}, 400, code="context_length_exceeded")
        self.assertEqual(post(self.s.url + "/v1/nothing", {})[0], 404)

    def test_oversized_body_and_header_flood(self):
        status, _ = post(self.chat, {"messages": [{"role": "user", "content": "x" * 100000}]})
        self.assertEqual(status, 413)
        with socket.create_connection(("127.0.0.1", int(self.s.url.rsplit(":", 1)[1])), timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Flood: " + b"a" * 100000 + b"\r\n\r\n")
            try:
                reply = sock.recv(1000)
            except ConnectionResetError:
                reply = b""
            self.assertFalse(reply.startswith(b"HTTP/1.1 200"), reply)
        with socket.create_connection(("127.0.0.1", int(self.s.url.rsplit(":", 1)[1])), timeout=30) as sock:
            many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
            self.assertTrue(sock.recv(100).startswith(b"HTTP/1.1 431"))
        self.assertEqual(urllib.request.urlopen(self.s.url + "/health").status, 200)  # still serving

    def test_ollama_errors(self):
        # Ollama's shape: {"error": "message"}, as the ollama client reads it (ResponseError.error)
        status, text = post(self.s.url + "/api/chat", {"model": "nope", "messages": []})
        self.assertEqual(status, 404)
        self.assertIsInstance(json.loads(text)["error"], str, text)
        status, text = post(self.s.url + "/api/generate", b"{not json")
        self.assertEqual(status, 400)
        self.assertIsInstance(json.loads(text)["error"], str, text)
        # The official ollama client surfaces the message and the status.
        c = ollama.Client(host=self.s.url)
        with self.assertRaises(ollama.ResponseError) as caught:
            c.chat(model="nope", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(caught.exception.status_code, 404)
        self.assertIn("nope", caught.exception.error)
        # And a real answer, streamed equal to not streamed (greedy).
        name, msgs = os.path.basename(MODEL), [{"role": "user", "content": "Hi"}]
        opts = {"temperature": 0, "num_predict": 8}
        whole = c.chat(model=name, messages=msgs, options=opts, think=False)
        parts = "".join(p.message.content for p in c.chat(model=name, messages=msgs, options=opts, think=False, stream=True))
        self.assertTrue(whole.message.content)
        self.assertEqual(parts, whole.message.content)
        self.assertTrue(whole.done)
        status, text = post(self.s.url + "/api/chat", {"model": os.path.basename(MODEL),
                                                      "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]})
        self.assertEqual(status, 400)
        status, text = post(self.s.url + "/api/generate", {"model": os.path.basename(MODEL), "prompt": "x",
                                                          "options": {"temperature": "warm"}})
        self.assertEqual(status, 400)
        self.assertIn("options.temperature", text)


class ApiKey(unittest.TestCase):
    def test_key_is_enforced(self):
        with WhaleServer(WHALE, MODEL, "--api-key", "sekrit") as s:
            with self.assertRaises(openai.AuthenticationError):
                client(s, "wrong").models.list()
            self.assertEqual([m.id for m in client(s, "sekrit").models.list()], [os.path.basename(MODEL)])
            self.assertEqual(urllib.request.urlopen(s.url + "/health").status, 200)  # health needs no key
            self.assertEqual(post(s.url + "/api/chat", {})[0], 401)


class DeepSeekV32(unittest.TestCase):
    """A V3.2 model (sparse attention, DSML tool calls, thinking switch) through the openai client."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model = make_chat_model(WHALE, os.path.join(cls.tmp.name, "tiny-v32"), base="v32")
        cls.s = WhaleServer(WHALE, cls.model, "--ctx", "512", "--alias", "tiny-v32").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)
        cls.tmp.cleanup()

    def test_format_is_v32_and_thinking_switches(self):
        c = client(self.s)
        msgs = [{"role": "user", "content": "What is 2+2? Explain."}]
        off = c.chat.completions.create(model="tiny-v32", messages=msgs, max_tokens=10, temperature=0)
        self.assertIsNone(getattr(off.choices[0].message, "reasoning_content", None))
        on = c.chat.completions.create(model="tiny-v32", messages=msgs, max_tokens=10, temperature=0,
                                       reasoning_effort="high")
        self.assertTrue(on.choices[0].message.reasoning_content)
        self.assertGreater(on.usage.completion_tokens_details.reasoning_tokens, 0)

    def test_dsml_tool_calls_never_leak_and_stream_like_non_stream(self):
        c = client(self.s)
        for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
            for seed in range(4):
                kw = dict(model="tiny-v32", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
                          tool_choice=choice, max_tokens=80, temperature=1.0, seed=seed)
                r = c.chat.completions.create(**kw)
                m = r.choices[0].message
                self.assertNotIn("DSML", m.content or "")
                if isinstance(choice, dict):  # the name is part of the forced block
                    self.assertEqual([t.function.name for t in m.tool_calls], ["get_weather"])
                for t in m.tool_calls or []:  # valid under the parameters: "city" is required
                    self.assertIsInstance(json.loads(t.function.arguments).get("city"), str, t.function.arguments)
                _, content, calls, finish, _ = collect_stream(c.chat.completions.create(stream=True, **kw))
                self.assertNotIn("DSML", content)
                self.assertEqual([(x["name"], x["arguments"]) for x in calls],
                                 [(t.function.name, t.function.arguments) for t in m.tool_calls or []])
                self.assertEqual(finish, r.choices[0].finish_reason)


class AnthropicClient(unittest.TestCase):
    """Anthropic's Messages API through the official `anthropic` SDK: text, thinking blocks,
    tool_use / tool_result turns (a V4 model, whose DSML calls always carry JSON objects), stop
    reasons, usage, token counting, streaming equal to non-streaming, errors in Anthropic's shape."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.v31 = WhaleServer(WHALE, MODEL, "--chat-format", "v3.1", "--ctx", "512").__enter__()
        model = make_chat_model(WHALE, os.path.join(cls.tmp.name, "tiny-v4"), base="v4", seed=3)
        cls.v4 = WhaleServer(WHALE, model, "--ctx", "512", "--alias", "tiny-v4").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.v31.__exit__(None, None, None)
        cls.v4.__exit__(None, None, None)
        cls.tmp.cleanup()

    def client(self, server):
        return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0, timeout=60)

    def test_text_stream_equals_non_stream(self):
        c = self.client(self.v31)
        system = "Be brief. " + "Answer like a whale would: slowly, deeply, and with the sea in mind. " * 4
        kw = dict(model=NAME, max_tokens=12, system=system, extra_body={"temperature": 0},
                  messages=[{"role": "user", "content": "What is 2+2?"}])
        r = c.messages.create(**kw)
        self.assertEqual((r.type, r.role, r.model), ("message", "assistant", NAME))
        self.assertTrue(r.id.startswith("msg_"))
        self.assertEqual([b.type for b in r.content], ["text"])  # thinking is off unless asked (V3.1)
        self.assertEqual(r.stop_reason, "max_tokens")
        self.assertEqual(r.usage.output_tokens, 12)
        with c.messages.stream(**kw) as s:
            final = s.get_final_message()
        self.assertEqual(final.content[0].text, r.content[0].text)
        self.assertEqual(final.stop_reason, "max_tokens")
        self.assertEqual(final.usage.output_tokens, 12)
        kinds = [e.type for e in c.messages.create(stream=True, **kw)]
        self.assertEqual(kinds[0], "message_start")
        self.assertEqual(kinds[-2:], ["message_delta", "message_stop"])
        self.assertEqual(kinds[1], "content_block_start")
        self.assertIn("content_block_stop", kinds)
        # The prompt cache: the same request again reads its blocks from the cache.
        again = c.messages.create(**kw)
        self.assertGreater(again.usage.cache_read_input_tokens, 0)
        self.assertEqual(again.usage.input_tokens + again.usage.cache_read_input_tokens,
                         r.usage.input_tokens + r.usage.cache_read_input_tokens)
        # count_tokens counts the same prompt
        n = c.messages.count_tokens(model=NAME, system=system, messages=kw["messages"])
        self.assertEqual(n.input_tokens, r.usage.input_tokens + r.usage.cache_read_input_tokens)

    def test_thinking_blocks(self):
        c = self.client(self.v31)
        kw = dict(model=NAME, max_tokens=16, extra_body={"temperature": 0}, thinking={"type": "enabled", "budget_tokens": 5},
                  messages=[{"role": "user", "content": "Think about 7*8."}])
        r = c.messages.create(**kw)
        self.assertEqual(r.content[0].type, "thinking")
        self.assertTrue(r.content[0].thinking)
        with c.messages.stream(**kw) as s:
            final = s.get_final_message()
        self.assertEqual([b.type for b in final.content], [b.type for b in r.content])
        self.assertEqual(final.content[0].thinking, r.content[0].thinking)
        # thinking blocks in the history are accepted
        follow = c.messages.create(model=NAME, max_tokens=4, extra_body={"temperature": 0}, messages=[
            {"role": "user", "content": "Think about 7*8."},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "7*8 is 56.", "signature": ""},
                                              {"type": "text", "text": "56"}]},
            {"role": "user", "content": [{"type": "text", "text": "And 6*9?"}]}])
        self.assertEqual(follow.usage.output_tokens, 4)

    def test_tool_use_round_trip(self):
        c = self.client(self.v4)
        tools = [{"name": "get_weather", "description": "Current weather in a city",
                  "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
        kw = dict(model="tiny-v4", max_tokens=60, extra_body={"temperature": 0}, tools=tools, tool_choice={"type": "tool", "name": "get_weather"},
                  thinking={"type": "enabled", "budget_tokens": 4}, messages=[{"role": "user", "content": "Weather in Paris?"}])
        r = c.messages.create(**kw)
        uses = [b for b in r.content if b.type == "tool_use"]
        self.assertEqual([u.name for u in uses], ["get_weather"])
        self.assertIsInstance(uses[0].input, dict)
        self.assertTrue(uses[0].id.startswith("toolu_"))
        # "tool_use" when the model ends its turn after the call, "max_tokens" when it runs on (a random model)
        self.assertIn(r.stop_reason, ("tool_use", "max_tokens"))
        self.assertNotIn("DSML", "".join(b.text for b in r.content if b.type == "text"))
        with c.messages.stream(**kw) as s:
            final = s.get_final_message()
        self.assertEqual([(b.name, b.input) for b in final.content if b.type == "tool_use"], [(u.name, u.input) for u in uses])
        self.assertEqual(final.stop_reason, r.stop_reason)
        follow = c.messages.create(model="tiny-v4", max_tokens=6, extra_body={"temperature": 0}, tools=tools, messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": uses[0].id, "name": "get_weather", "input": uses[0].input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18C, sunny"}]}])
        self.assertEqual(follow.usage.output_tokens, 6)

    def test_stop_sequences(self):
        c = self.client(self.v31)
        kw = dict(model=NAME, max_tokens=16, extra_body={"temperature": 0}, messages=[{"role": "user", "content": "Count to ten."}])
        text = c.messages.create(**kw).content[0].text
        cut = next(k for k in range(2, len(text) - 1) if text.find(text[k:k + 2]) == k and text[k:k + 2].strip())
        r = c.messages.create(stop_sequences=[text[cut:cut + 2]], **kw)
        self.assertEqual(r.stop_reason, "stop_sequence")
        self.assertEqual(r.stop_sequence, text[cut:cut + 2])
        self.assertEqual(r.content[0].text, text[:cut])

    def test_errors_in_anthropic_shape(self):
        c = self.client(self.v31)
        with self.assertRaises(anthropic.BadRequestError) as e:
            c.messages.create(model=NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=0)
        self.assertEqual(e.exception.body["error"]["type"], "invalid_request_error")
        with self.assertRaises(anthropic.BadRequestError) as e:
            c.messages.create(model=NAME, max_tokens=4, messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
        self.assertIn("image", str(e.exception))
        with self.assertRaises(anthropic.NotFoundError) as e:
            c.messages.create(model="claude-opus-4", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.body["error"]["type"], "not_found_error")
        status, body = post(self.v31.url + "/v1/messages", {"model": NAME, "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"]["message"], "'max_tokens' is required")
        status, body = post(self.v31.url + "/v1/messages", b"{not json")
        self.assertEqual((status, json.loads(body)["type"]), (400, "error"))


class ResponsesAPI(unittest.TestCase):
    """OpenAI's Responses API through the official `openai` SDK: output items (reasoning, message,
    function_call), input items for multi-turn tool use, status and usage, streaming events whose
    accumulated response equals the non-streamed one, errors."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.v31 = WhaleServer(WHALE, MODEL, "--chat-format", "v3.1", "--ctx", "512").__enter__()
        model = make_chat_model(WHALE, os.path.join(cls.tmp.name, "tiny-v4"), base="v4", seed=4)
        cls.v4 = WhaleServer(WHALE, model, "--ctx", "512", "--alias", "tiny-v4").__enter__()
        cls.trained = WhaleServer(WHALE, "default", "--ctx", "512").__enter__()  # ends its answers (EOS)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.v31, cls.v4, cls.trained):
            s.__exit__(None, None, None)
        cls.tmp.cleanup()

    @staticmethod
    def final_of(stream):
        """The response of the last event: response.completed, or response.incomplete (which the
        SDK's stream helper does not accumulate, as with OpenAI's own API)."""
        events = list(stream)
        return events[-1].response, [e.type for e in events]

    def test_text_and_stream(self):
        c = client(self.v31)
        kw = dict(model=NAME, input="What is 2+2?", instructions="Be brief.", max_output_tokens=12, temperature=0)
        r = c.responses.create(**kw)
        self.assertEqual((r.object, r.model, r.status), ("response", NAME, "incomplete"))
        self.assertEqual(r.incomplete_details.reason, "max_output_tokens")
        self.assertEqual([o.type for o in r.output], ["message"])
        self.assertTrue(r.output_text)
        self.assertEqual(r.usage.output_tokens, 12)
        self.assertEqual(r.usage.total_tokens, r.usage.input_tokens + 12)
        final, kinds = self.final_of(c.responses.create(stream=True, **kw))
        self.assertEqual(final.output_text, r.output_text)
        self.assertEqual(final.status, "incomplete")
        self.assertEqual(kinds[:2], ["response.created", "response.in_progress"])
        self.assertEqual(kinds[-1], "response.incomplete")
        self.assertIn("response.output_text.delta", kinds)
        # A complete answer, through the SDK's stream helper (which needs response.completed).
        c = client(self.trained)
        kw = dict(model="default", input=[{"role": "user", "content": [{"type": "input_text", "text": "What is 12 + 7?"}]}],
                  max_output_tokens=300, temperature=0)
        done = c.responses.create(**kw)
        self.assertEqual(done.status, "completed")
        with c.responses.stream(**kw) as s:
            final = s.get_final_response()
        self.assertEqual(final.output_text, done.output_text)
        self.assertEqual(final.usage.output_tokens, done.usage.output_tokens)

    def test_reasoning_items(self):
        c = client(self.v31)
        kw = dict(model=NAME, input="Think about 7*8.", reasoning={"effort": "high"}, max_output_tokens=16, temperature=0,
                  extra_body={"thinking": {"type": "enabled", "budget_tokens": 5}})
        r = c.responses.create(**kw)
        self.assertEqual(r.output[0].type, "reasoning")
        self.assertTrue(r.output[0].content[0].text)
        self.assertGreaterEqual(r.usage.output_tokens_details.reasoning_tokens, 5)
        final, _ = self.final_of(c.responses.create(stream=True, **kw))
        self.assertEqual([o.type for o in final.output], [o.type for o in r.output])
        self.assertEqual(final.output[0].content[0].text, r.output[0].content[0].text)
        self.assertEqual(final.output_text, r.output_text)

    def test_function_calls_round_trip(self):
        c = client(self.v4)
        tools = [{"type": "function", "name": "get_weather", "description": "Current weather in a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
        kw = dict(model="tiny-v4", input="Weather in Paris?", tools=tools, tool_choice={"type": "function", "name": "get_weather"},
                  max_output_tokens=60, temperature=0, extra_body={"thinking": {"type": "enabled", "budget_tokens": 4}})
        r = c.responses.create(**kw)
        calls = [o for o in r.output if o.type == "function_call"]
        self.assertEqual([x.name for x in calls], ["get_weather"])
        self.assertIsInstance(json.loads(calls[0].arguments), dict)
        self.assertTrue(calls[0].call_id.startswith("call_"))
        self.assertNotIn("DSML", r.output_text)
        final, _ = self.final_of(c.responses.create(stream=True, **kw))
        self.assertEqual([(o.name, o.arguments) for o in final.output if o.type == "function_call"],
                         [(x.name, x.arguments) for x in calls])
        items = [{"role": "user", "content": "Weather in Paris?"}]
        items += [o.model_dump(exclude_none=True) for o in r.output if o.type in ("reasoning", "function_call")]
        items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, sunny"})
        follow = c.responses.create(model="tiny-v4", input=items, tools=tools, max_output_tokens=6, temperature=0)
        self.assertEqual(follow.usage.output_tokens, 6)

    def test_errors(self):
        c = client(self.v31)
        with self.assertRaises(openai.BadRequestError) as e:
            c.responses.create(model=NAME, input="hi", previous_response_id="resp_123")
        self.assertIn("previous_response_id", str(e.exception))
        with self.assertRaises(openai.BadRequestError):
            c.responses.create(model=NAME, input=[{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}])
        with self.assertRaises(openai.BadRequestError):
            c.responses.create(model=NAME, input="hi", tools=[{"type": "web_search"}])
        with self.assertRaises(openai.NotFoundError):
            c.responses.create(model="gpt-5", input="hi")


class DeepSeekV4(unittest.TestCase):
    """A V4 model (sliding/CSA/HCA layers, mHC, hash routing): thinking on by default, off on request,
    DSML tool calls through the openai client, Ollama's think switch."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model = make_chat_model(WHALE, os.path.join(cls.tmp.name, "tiny-v4"), base="v4")
        cls.s = WhaleServer(WHALE, cls.model, "--ctx", "512", "--alias", "tiny-v4").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)
        cls.tmp.cleanup()

    def test_thinking_on_by_default_and_off_on_request(self):
        c = client(self.s)
        msgs = [{"role": "user", "content": "What is 2+2?"}]
        on = c.chat.completions.create(model="tiny-v4", messages=msgs, max_tokens=10, temperature=0)
        self.assertTrue(on.choices[0].message.reasoning_content)
        off = c.chat.completions.create(model="tiny-v4", messages=msgs, max_tokens=10, temperature=0,
                                        extra_body={"thinking": {"type": "disabled"}})
        self.assertIsNone(getattr(off.choices[0].message, "reasoning_content", None))
        self.assertTrue(off.choices[0].message.content)
        mx = c.chat.completions.create(model="tiny-v4", messages=msgs, max_tokens=4, temperature=0, reasoning_effort="max")
        # the maximum-effort paragraph makes the prompt longer than effort high's
        hi = c.chat.completions.create(model="tiny-v4", messages=msgs, max_tokens=4, temperature=0, reasoning_effort="high")
        self.assertGreater(mx.usage.prompt_tokens, hi.usage.prompt_tokens + 40)
        body = {"model": "tiny-v4", "messages": msgs, "think": False, "stream": False, "options": {"num_predict": 6}}
        self.assertNotIn("thinking", json.loads(curl(self.s.url + "/api/chat", "-d", json.dumps(body)))["message"])

    def test_tool_calls_round_trip_without_leaks(self):
        c = client(self.s)
        # Thinking on with a budget: </think> is forced after 4 tokens, then the forced call.
        kw = dict(model="tiny-v4", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=60, temperature=0,
                  extra_body={"thinking": {"type": "enabled", "budget_tokens": 4}})
        r = c.chat.completions.create(**kw)
        m = r.choices[0].message
        self.assertNotIn("DSML", m.content or "")
        self.assertEqual([t.function.name for t in m.tool_calls], ["get_weather"])
        self.assertIsInstance(json.loads(m.tool_calls[0].function.arguments), dict)
        _, content, calls, _, _ = collect_stream(c.chat.completions.create(stream=True, **kw))
        self.assertNotIn("DSML", content)
        self.assertEqual([(x["name"], x["arguments"]) for x in calls],
                         [(t.function.name, t.function.arguments) for t in m.tool_calls])
        # The result goes back in a user turn; the conversation continues.
        follow = c.chat.completions.create(model="tiny-v4", tools=TOOLS, max_tokens=6, temperature=0, messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "reasoning_content": m.reasoning_content or "",
             "tool_calls": [{"id": m.tool_calls[0].id, "type": "function",
                             "function": {"name": "get_weather", "arguments": m.tool_calls[0].function.arguments}}]},
            {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "18C, sunny"}])
        self.assertEqual(follow.usage.completion_tokens, 6)


class Ollama(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = WhaleServer(WHALE, MODEL, "--chat-format", "v3.1", "--ctx", "512").__enter__()
        cls.name = os.path.basename(MODEL)

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)

    def test_chat_stream_and_non_stream_with_curl(self):
        body = {"model": self.name, "messages": [{"role": "user", "content": "Hello"}], "think": True,
                "options": {"temperature": 0, "num_predict": 8}}
        lines = [json.loads(l) for l in curl(self.s.url + "/api/chat", "-d", json.dumps(body)).splitlines() if l.strip()]
        self.assertTrue(all(not l["done"] for l in lines[:-1]))
        last = lines[-1]
        self.assertTrue(last["done"])
        self.assertEqual(last["done_reason"], "length")
        self.assertEqual(last["eval_count"], 8)
        for k in ("total_duration", "prompt_eval_duration", "eval_duration"):
            self.assertIsInstance(last[k], int)
        thinking = "".join(l["message"].get("thinking", "") for l in lines)
        content = "".join(l["message"]["content"] for l in lines)
        one = json.loads(curl(self.s.url + "/api/chat", "-d", json.dumps({**body, "stream": False})))
        self.assertEqual(one["message"].get("thinking", ""), thinking)
        self.assertEqual(one["message"]["content"], content)
        self.assertTrue(thinking)

    def test_generate_and_management_endpoints(self):
        r = json.loads(curl(self.s.url + "/api/generate", "-d", json.dumps(
            {"model": self.name, "prompt": "Why is the sky blue?", "stream": False, "options": {"num_predict": 5}})))
        self.assertTrue(r["done"])
        self.assertEqual(r["eval_count"], 5)
        self.assertIsInstance(r["response"], str)
        load = json.loads(curl(self.s.url + "/api/generate", "-d", json.dumps({"model": self.name})))
        self.assertEqual(load["done_reason"], "load")
        raw = json.loads(curl(self.s.url + "/api/generate", "-d", json.dumps(
            {"model": self.name, "prompt": "<think>", "raw": True, "stream": False, "options": {"num_predict": 3}})))
        self.assertEqual(raw["eval_count"], 3)
        tags = json.loads(curl(self.s.url + "/api/tags"))
        self.assertEqual(tags["models"][0]["name"], self.name)
        show = json.loads(curl(self.s.url + "/api/show", "-d", json.dumps({"model": self.name})))
        self.assertIn("thinking", show["capabilities"])
        self.assertEqual(show["model_info"]["general.architecture"], "deepseek2")
        self.assertEqual(json.loads(curl(self.s.url + "/api/ps"))["models"][0]["name"], self.name)
        self.assertIn("version", json.loads(curl(self.s.url + "/api/version")))

    def test_durations_add_up(self):
        # total_duration covers queueing, prefill and decode: never less than their sum, with
        # requests queued behind each other (Ollama's own client computes rates from these).
        c = ollama.Client(host=self.s.url)
        def one(i):
            return c.generate(model=self.name, prompt="Why is the sky blue? " * (i + 1), options={"num_predict": 6, "seed": i})
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            results = list(ex.map(one, range(12)))
        results.append(list(c.generate(model=self.name, prompt="Why?", stream=True, options={"num_predict": 6}))[-1])
        for r in results:
            self.assertGreaterEqual(r.total_duration, r.prompt_eval_duration + r.eval_duration, r)
            self.assertGreater(r.eval_duration, 0)

    def test_json_format(self):
        r = json.loads(curl(self.s.url + "/api/chat", "-d", json.dumps(
            {"model": self.name, "messages": [{"role": "user", "content": "JSON"}], "format": "json", "stream": False,
             "options": {"num_predict": 30, "seed": 5}})))
        self.assertTrue(r["message"]["content"].startswith("{"))


class Operations(unittest.TestCase):
    def test_health_metrics_and_disconnect_cancels(self):
        with WhaleServer(WHALE, MODEL, "--ctx", "4096", "--parallel", "2") as s:
            m0 = s.metrics()
            self.assertIn('whale:num_requests_running{model_name="%s"}' % os.path.basename(MODEL), m0)
            # A client that leaves mid-stream: the request is cancelled and its blocks freed.
            # A raw socket, closed explicitly: a client library may keep its socket open after
            # the response object is closed, and then the server only sees a full buffer.
            body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story"}], "max_tokens": 3000,
                               "stream": True}).encode()
            sock = socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=30)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            got = b""
            while got.count(b"data: ") < 3:  # the role chunk, then generated text: the request is running
                more = sock.recv(4096)
                self.assertTrue(more, got)
                got += more
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            deadline = time.time() + 20
            while time.time() < deadline and (s.metric("whale:num_requests_running") > 0 or
                                              s.metric("whale:num_requests_waiting") > 0):
                time.sleep(0.1)
            self.assertEqual(s.metric("whale:num_requests_running"), 0,
                             "metrics: %s\nlog tail: %s" % ({k: v for k, v in s.metrics().items() if "bucket" not in k},
                                                            "".join(s.log[-5:])))
            self.assertLess(s.metric("whale:generation_tokens_total"), 3000)
            self.assertEqual(s.metric("whale:kv_blocks_free"), s.metric("whale:kv_blocks_total"))
            # The same for a non-streamed request from a client accepting gzip (httpx does by
            # default): its heartbeat must reach the socket, not a compressor's buffer.
            before = s.metric("whale:generation_tokens_total")
            body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story"}], "max_tokens": 3900,
                               "n": 8}).encode()  # 8 x 3900 tokens: long enough to leave in the middle
            sock = socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=30)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Accept-Encoding: gzip, deflate, br\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            while s.metric("whale:num_requests_running") < 1:  # (token counters move only when requests end)
                time.sleep(0.05)
            time.sleep(0.5)
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            deadline = time.time() + 8  # heartbeats every 2 s: the second write after the close fails
            while time.time() < deadline and (s.metric("whale:num_requests_running") > 0 or
                                              s.metric("whale:num_requests_waiting") > 0):
                time.sleep(0.1)
            self.assertEqual(s.metric("whale:num_requests_running") + s.metric("whale:num_requests_waiting"), 0,
                             "a gzip client's departure went unnoticed")
            self.assertLess(s.metric("whale:generation_tokens_total") - before, 8 * 3900)
            client(s).chat.completions.create(model=NAME, messages=[{"role": "user", "content": "x"}], max_tokens=3)
            m = s.metrics()
            name = os.path.basename(MODEL)
            self.assertGreaterEqual(m['whale:request_success_total{model_name="%s"}' % name], 2)
            self.assertGreater(m['whale:time_to_first_token_seconds_count{model_name="%s"}' % name], 0)
            self.assertGreater(m['whale:inter_token_latency_seconds_count{model_name="%s"}' % name], 0)

    def test_sigterm_waits_a_bounded_time(self):
        # SIGTERM: no new connections, running requests get --shutdown-timeout seconds, then they
        # are cancelled and their clients get what was generated; a second signal cancels at once.
        body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story"}], "max_tokens": 3900,
                           "n": 8}).encode()  # about 30 s of work on this model
        for args, signals in ((["--shutdown-timeout", "1"], 1), ([], 2)):
            s = WhaleServer(WHALE, MODEL, "--ctx", "4096", *args).__enter__()
            try:
                sock = socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=30)
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
                while s.metric("whale:num_requests_running") < 1:  # (token counters move only when requests end)
                    time.sleep(0.05)
                time.sleep(0.5)
                t0 = time.time()
                for _ in range(signals):
                    s.proc.send_signal(signal.SIGTERM)
                    time.sleep(0.3)
                s.proc.wait(timeout=20)
                self.assertLess(time.time() - t0, 8, args)
                self.assertEqual(s.proc.returncode, 0)
                got = b""
                while True:
                    more = sock.recv(65536)
                    if not more:
                        break
                    got += more
                sock.close()
                self.assertIn(b"HTTP/1.1 200", got)
                self.assertIn(b'"choices"', got)  # the answer so far, not a dropped connection
            finally:
                s.__exit__(None, None, None)

    def test_mtp_speculation_gives_the_same_answers_and_reports_acceptance(self):
        # The embedded default model has an MTP module; with --spec mtp the answers are the
        # plain ones (greedy and seeded sampling) and /metrics counts drafts and acceptances.
        default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "whale-r2-tiny")
        asks = [dict(messages=[{"role": "user", "content": "What is 348 + 275?"}], max_tokens=60, temperature=0,
                     extra_body={"chat_template_kwargs": {"thinking": True}}),
                dict(messages=[{"role": "user", "content": "What is 27 * 14?"}], max_tokens=60, temperature=0.8, seed=3)]
        answers = {}
        for args in ((), ("--spec", "mtp", "--draft", "3")):
            with WhaleServer(WHALE, default, "--parallel", "2", "--ctx", "1024", *args) as s:
                c = client(s)
                answers[args] = [c.chat.completions.create(model="whale-r2-tiny", **a).choices[0].message for a in asks]
                if args:  # `default` names the embedded model over HTTP too
                    prompt_ids = [int(t) for t in json.loads(subprocess.run(
                        [WHALE, "tokenize", "--tokenizer", "default"], input="What is 19 + 23?", check=True,
                        capture_output=True, text=True).stdout)["ids"]]
                    served = c.completions.create(model="default", prompt=prompt_ids, max_tokens=24, temperature=0.9,
                                                  seed=5).choices[0].text
                text = curl(s.url + "/metrics")
                m = s.metrics()
                if args:
                    for pos in range(3):
                        self.assertIn('whale:spec_decode_num_accepted_tokens_per_pos{model_name="whale-r2-tiny",'
                                      'position="%d"}' % pos, text)
                    drafted = m['whale:spec_decode_num_draft_tokens_total{model_name="whale-r2-tiny"}']
                    accepted = m['whale:spec_decode_num_accepted_tokens_total{model_name="whale-r2-tiny"}']
                    self.assertGreater(drafted, 0)
                    self.assertGreater(accepted, 0)
                    self.assertLessEqual(accepted, drafted)
                else:
                    self.assertNotIn("accepted_tokens_per_pos", text)
        # `whale generate --spec` is the same engine: the same seeded sample as `serve --spec`.
        ids = json.loads(subprocess.run([WHALE, "generate", "--model", "default", "--tokens", ",".join(map(str, prompt_ids)),
                                         "--max-tokens", "24", "--temperature", "0.9", "--seed", "5", "--spec", "mtp",
                                         "--draft", "3"], check=True, capture_output=True, text=True).stdout)
        eos = json.load(open(os.path.join(default, "config.json")))["eos_token_id"]
        ids = [t for t in ids if t != eos]
        text = subprocess.run([WHALE, "detokenize", "--tokenizer", "default", "--ids", ",".join(map(str, ids))],
                              check=True, capture_output=True, text=True).stdout if ids else ""
        self.assertEqual(text, served)
        for plain, spec in zip(answers[()], answers[("--spec", "mtp", "--draft", "3")]):
            self.assertEqual(plain.content, spec.content)
            self.assertEqual(getattr(plain, "reasoning_content", None), getattr(spec, "reasoning_content", None))
        self.assertTrue(answers[()][0].reasoning_content)

    def test_health_is_503_while_loading_then_200(self):
        # The socket is bound before the model loads (~0.3 s for the tokenizer and weights):
        # the first poll, right after the "listening" line, lands inside the load.
        with WhaleServer(WHALE, MODEL, wait_ready=False) as s:
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(s.url + "/health")
            self.assertEqual(e.exception.code, 503)
            self.assertEqual(json.loads(e.exception.read())["error"]["message"], "Loading model")
            s.wait_healthy()
            self.assertEqual(urllib.request.urlopen(s.url + "/health").status, 200)

    def test_a_model_that_cannot_load_is_a_clear_error(self):
        with tempfile.TemporaryDirectory() as d:
            proc = subprocess.Popen([WHALE, "serve", d, "--port", "0"], stderr=subprocess.PIPE, text=True)
            out = proc.communicate(timeout=30)[1]
            self.assertEqual(proc.returncode, 1)
            self.assertIn("whale: error:", out)
            self.assertIn(d, out)

    def test_load_64_concurrent_streams(self):
        # Under the sanitizers (ten times slower) the same paths run with fewer streams and rounds.
        streams, rounds = (16, 2) if os.environ.get("WHALE_SANITIZED") else (64, 3)
        with WhaleServer(WHALE, MODEL, "--parallel", "16", "--ctx", "256") as s:
            c = client(s)

            def one(i):
                stream = c.chat.completions.create(model=NAME, messages=[{"role": "user", "content": f"Story {i}"}],
                                                   max_tokens=24, temperature=0.7, seed=i, stream=True,
                                                   stream_options={"include_usage": True})
                return collect_stream(stream)[4].completion_tokens

            rss = []
            for _ in range(rounds):
                t0 = time.time()
                with concurrent.futures.ThreadPoolExecutor(streams) as ex:
                    tokens = sum(ex.map(one, range(streams)))
                dt = time.time() - t0
                rss.append(s.rss_kib())
                print(f"load: {streams} streams, {tokens} tokens in {dt:.2f} s = {tokens / dt:.0f} tok/s, RSS {rss[-1] // 1024} MiB",
                      file=sys.stderr)
                self.assertEqual(tokens, streams * 24)
            self.assertLess(rss[-1], rss[0] * 1.2 + 16 * 1024)  # stable memory across rounds


if __name__ == "__main__":
    WHALE = os.path.abspath(sys.argv.pop(1))
    with tempfile.TemporaryDirectory() as tmp:
        MODEL = make_chat_model(WHALE, os.path.join(tmp, "tiny-chat"))
        unittest.main(verbosity=2)
