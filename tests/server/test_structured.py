"""Structured output under many random JSON schemas, checked by an independent validator.

Every request of this test is sampled at temperature 1 from the embedded default model (and
from a random-weight DeepSeek-V3.2 model for DSML tool calls), with a schema drawn at random;
every answer must validate under its schema with the `jsonschema` package (Draft 2020-12,
formats checked). Three routes: OpenAI `response_format` json_schema, Ollama `format`, and
forced tool calls (`tool_choice` "required") whose arguments must validate under the tool's
`parameters`.

Usage: python3 tests/server/test_structured.py WHALE_BINARY   (ctest runs it)
"""
import json
import os
import random
import sys
import tempfile
import unittest

import jsonschema
import ollama
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whale_server import ROOT, WhaleServer, make_chat_model  # noqa: E402

WHALE = None
DEFAULT_MODEL = os.path.join(ROOT, "models", "whale-r2-tiny")
# Under the sanitizers (ten times slower) fewer requests.
ROUNDS = 8 if os.environ.get("WHALE_SANITIZED") else 30

PATTERNS = ["^[a-z]{2,5}$", "^\\d{3}-\\d{4}$", "^(yes|no|maybe)$", "^[A-Z][a-z]+$", "id_[0-9]+", "^\\w+@\\w+\\.com$"]
FORMATS = ["date", "date-time", "uuid", "email", "ipv4", "time"]
WORDS = ["alpha", "beta", "gamma", "delta", "x", "y", "name", "count", "items", "kind", "value", "ok", "tags", "when"]


def random_schema(rng, depth=0, defs=None):
    """A schema using the keywords whale enforces (see src/runtime/json_grammar.h)."""
    kinds = ["string", "integer", "number", "boolean", "null", "enum", "const", "array", "object", "anyOf", "types"]
    if depth >= 3:
        kinds = kinds[:7]
    k = rng.choice(kinds)
    if k == "string":
        s = {"type": "string"}
        r = rng.random()
        if r < 0.25:
            s["pattern"] = rng.choice(PATTERNS)
        elif r < 0.45:
            s["format"] = rng.choice(FORMATS)
        else:
            if rng.random() < 0.5:
                s["minLength"] = rng.randint(0, 3)
            s["maxLength"] = s.get("minLength", 0) + rng.randint(0, 12)
        return s
    if k in ("integer", "number"):
        s = {"type": k}
        if rng.random() < 0.7:
            lo = rng.randint(-50, 50)
            s["minimum" if rng.random() < 0.5 else "exclusiveMinimum"] = lo
            s["maximum" if rng.random() < 0.5 else "exclusiveMaximum"] = lo + rng.randint(2, 500)
        return s
    if k in ("boolean", "null"):
        return {"type": k}
    if k == "enum":
        return {"enum": rng.sample(["red", "green", "blue", 1, 2.5, None, True, "a b", "ü"], rng.randint(1, 4))}
    if k == "const":
        return {"const": rng.choice(["fixed", 42, False, {"a": [1, 2]}])}
    if k == "array":
        s = {"type": "array", "items": random_schema(rng, depth + 1, defs)}
        lo = rng.randint(0, 2)
        if rng.random() < 0.6:
            s["minItems"] = lo
        s["maxItems"] = lo + rng.randint(0, 3)
        return s
    if k == "object":
        names = rng.sample(WORDS, rng.randint(1, 4))
        props = {n: random_schema(rng, depth + 1, defs) for n in names}
        s = {"type": "object", "properties": props, "required": rng.sample(names, rng.randint(0, len(names))),
             "additionalProperties": rng.random() < 0.2}
        if defs is not None and rng.random() < 0.3:  # sometimes through $defs, as Pydantic writes models
            name = f"M{len(defs)}"
            defs[name] = s
            return {"$ref": f"#/$defs/{name}"}
        return s
    if k == "anyOf":
        return {"anyOf": [random_schema(rng, depth + 1, defs) for _ in range(rng.randint(2, 3))]}
    return {"type": rng.sample(["string", "integer", "boolean", "null"], 2)}


def top_schema(rng, object_root=False):
    defs = {}
    s = random_schema(rng, 0, defs)
    if object_root and s.get("type") != "object":
        s = {"type": "object", "properties": {"result": s, "note": {"type": "string", "maxLength": 20}},
             "required": ["result"], "additionalProperties": False}
    if defs:
        s = {**s, "$defs": defs}
    return s


def check(test, schema, text, where):
    try:
        value = json.loads(text)
    except ValueError as e:
        test.fail(f"{where}: not JSON ({e}): {text!r}\nschema: {json.dumps(schema)}")
    errors = list(jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).iter_errors(value))
    test.assertFalse(errors, f"{where}: {text!r} does not validate: {[e.message for e in errors][:3]}\nschema: {json.dumps(schema)}")


class Structured(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.default = WhaleServer(WHALE, DEFAULT_MODEL, "--parallel", "4", "--ctx", "4096", "--alias", "default").__enter__()
        v32 = make_chat_model(WHALE, os.path.join(cls.tmp.name, "tiny-v32"), base="v32")
        cls.v32 = WhaleServer(WHALE, v32, "--ctx", "2048", "--alias", "tiny-v32").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.default.__exit__(None, None, None)
        cls.v32.__exit__(None, None, None)
        cls.tmp.cleanup()

    def test_response_format_json_schema(self):
        c = openai.OpenAI(base_url=self.default.url + "/v1", api_key="none", max_retries=0, timeout=120)
        rng = random.Random(1)
        finishes = set()
        for i in range(ROUNDS):
            schema = top_schema(rng)
            try:
                r = c.chat.completions.create(
                    model="default", messages=[{"role": "user", "content": "Answer in JSON."}], temperature=1.0, seed=i,
                    max_tokens=rng.choice([24, 200]),
                    response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})
            except openai.BadRequestError as e:  # a schema whose shortest answer needs more than max_tokens
                self.assertIn("is too small for the shortest answer the JSON schema allows", str(e))
                finishes.add("refused")
                continue
            finishes.add(r.choices[0].finish_reason)
            check(self, schema, r.choices[0].message.content, f"request {i}")
        print("finish reasons:", finishes, file=sys.stderr)
        self.assertIn("stop", finishes)

    def test_ollama_format_schema(self):
        c = ollama.Client(host=self.default.url)
        rng = random.Random(2)
        for i in range(ROUNDS // 2):
            schema = top_schema(rng, object_root=True)
            r = c.chat(model="default", messages=[{"role": "user", "content": "JSON"}], format=schema, think=False,
                       options={"temperature": 1.0, "seed": i, "num_predict": 200})
            check(self, schema, r.message.content, f"request {i}")

    def test_forced_tool_calls_validate_in_json_and_dsml(self):
        rng = random.Random(3)
        for server, model in ((self.default, "default"), (self.v32, "tiny-v32")):
            c = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
            for i in range(ROUNDS // 2):
                tools = [{"type": "function", "function": {"name": f"tool_{j}", "description": "a tool",
                                                           "parameters": top_schema(rng, object_root=True)}}
                         for j in range(rng.randint(1, 2))]
                r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Use a tool."}],
                                              tools=tools, tool_choice="required", temperature=1.0, seed=i, max_tokens=300)
                calls = r.choices[0].message.tool_calls
                self.assertTrue(calls, r)
                by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
                self.assertIn(calls[0].function.name, by_name)
                check(self, by_name[calls[0].function.name], calls[0].function.arguments, f"{model} request {i}")

    def test_responses_text_format_and_anthropic_tool_input(self):
        # The Responses API's flat text.format json_schema, and Anthropic's forced tool_use whose
        # input must validate under input_schema, through their official SDKs.
        import anthropic
        rng = random.Random(4)
        oc = openai.OpenAI(base_url=self.default.url + "/v1", api_key="none", max_retries=0, timeout=120)
        ac = anthropic.Anthropic(base_url=self.default.url, api_key="none", max_retries=0, timeout=120)
        for i in range(max(2, ROUNDS // 6)):
            schema = top_schema(rng, object_root=True)
            r = oc.responses.create(model="default", input="Answer in JSON.", max_output_tokens=200,
                                    text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
                                    extra_body={"temperature": 1.0, "seed": i})
            check(self, schema, r.output_text, f"responses request {i}")
            tool_schema = top_schema(rng, object_root=True)
            m = ac.messages.create(model="default", max_tokens=300, messages=[{"role": "user", "content": "Use the tool."}],
                                   tools=[{"name": "record", "description": "records a value", "input_schema": tool_schema}],
                                   tool_choice={"type": "any"}, extra_body={"temperature": 1.0})
            uses = [b for b in m.content if b.type == "tool_use"]
            self.assertTrue(uses, m)
            self.assertEqual(uses[0].name, "record")
            check(self, tool_schema, json.dumps(uses[0].input), f"anthropic request {i}")

    def test_unsupported_schemas_are_a_clear_400(self):
        c = openai.OpenAI(base_url=self.default.url + "/v1", api_key="none", max_retries=0, timeout=60)
        for schema, needle in (({"type": "array", "uniqueItems": True}, "uniqueItems"),
                               ({"type": "object", "properties": {"a": {"not": {}}}}, "#/properties/a: the keyword 'not'"),
                               ({"type": "string", "pattern": "(?=x)"}, "lookaround"),
                               ({"type": "integer", "minimum": 3, "maximum": 1}, "no value satisfies")):
            with self.assertRaises(openai.BadRequestError) as e:
                c.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}], max_tokens=5,
                                          response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
            self.assertIn(needle, str(e.exception))
            self.assertIn("response_format.json_schema.schema", str(e.exception))


if __name__ == "__main__":
    WHALE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
