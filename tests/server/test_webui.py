"""The chat page at / in a real headless browser (Debian's chromium driven by Playwright):
it loads with no external requests, sends a message and shows the answer streaming in,
shows reasoning in a collapsible block, stops a running generation, and keeps the conversation
across a reload.

Usage: python3 tests/server/test_webui.py WHALE_BINARY   (ctest runs it; scripts/deps.sh --test
installs chromium and the playwright package)
"""
import os
import shutil
import sys
import tempfile
import time
import unittest

from playwright.sync_api import sync_playwright

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whale_server import WhaleServer, make_chat_model  # noqa: E402

WHALE = None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class ChatPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not CHROMIUM:
            raise RuntimeError("chromium is not installed (scripts/deps.sh --test installs it)")
        cls.tmp = tempfile.TemporaryDirectory()
        # The trained default model answers and stops; a random model talks until max_tokens.
        cls.trained = WhaleServer(WHALE, "default", "--ctx", "1024").__enter__()
        cls.talker = WhaleServer(WHALE, make_chat_model(WHALE, os.path.join(cls.tmp.name, "m")), "--ctx", "4096").__enter__()
        cls.pw = sync_playwright().start()
        cls.browser = cls.pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.pw.stop()
        cls.trained.__exit__(None, None, None)
        cls.talker.__exit__(None, None, None)
        cls.tmp.cleanup()

    def open(self, server, bypass_csp=True):
        # Playwright's wait_for_function evaluates strings, which the page's Content-Security-
        # Policy forbids; test_page_works_under_its_csp checks the page under its real policy.
        page = self.browser.new_page(bypass_csp=bypass_csp)
        self.requests = []
        page.on("request", lambda r: self.requests.append(r.url))
        self.errors = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(server.url + "/")
        deadline = time.time() + 20
        while page.text_content("#model") == "…" and time.time() < deadline:
            time.sleep(0.05)
        page.fill("#temperature", "0")  # greedy: the same answer every run
        page.dispatch_event("#temperature", "change")
        return page

    def send(self, page, text):
        page.fill("#input", text)
        page.press("#input", "Enter")

    def wait_idle(self, page, timeout=60000):
        page.wait_for_function("!document.body.dataset.busy", timeout=timeout)

    def test_streamed_answer_reasoning_and_reload(self):
        page = self.open(self.trained)
        self.assertEqual(page.title(), "whale")
        self.assertEqual(page.text_content("#model"), "whale-r2-tiny")  # the served model's id
        # Count how often the answer being written changes: streamed, not delivered at once.
        page.evaluate("""() => {
          window.updates = 0;
          new MutationObserver(() => window.updates++).observe(document.getElementById('log'),
            {childList: true, subtree: true, characterData: true});
        }""")
        page.check("#think")
        self.send(page, "What is 347 + 285?")
        page.wait_for_selector(".msg.assistant details.reasoning")
        self.wait_idle(page)
        self.assertGreater(page.evaluate("window.updates"), 5)
        answer = page.locator(".msg.assistant").last
        details = answer.locator("details.reasoning")
        self.assertFalse(details.evaluate("d => d.open"))  # collapsed once the answer is there
        self.assertIn("Thought for", details.locator("summary").text_content())
        details.locator("summary").click()
        self.assertTrue(details.evaluate("d => d.open"))
        self.assertTrue(details.locator(".text").text_content().strip())
        self.assertTrue(answer.locator(".content").text_content().strip())
        self.assertIn("tokens/s", answer.locator(".stats").text_content())
        # Thinking off: no reasoning block.
        page.uncheck("#think")
        self.send(page, "What is 12 + 7?")
        self.wait_idle(page)
        self.assertEqual(page.locator(".msg.assistant").last.locator("details.reasoning").count(), 0)
        self.assertEqual(page.locator(".msg").count(), 4)
        # The conversation is kept in the browser: a reload shows it again.
        page.reload()
        page.wait_for_selector(".msg.assistant")
        self.assertEqual(page.locator(".msg").count(), 4)
        self.assertIn("347 + 285", page.locator(".msg.user").first.text_content())
        # Nothing was fetched from anywhere but the server, and the page raised no errors.
        self.assertTrue(all(u.startswith(self.trained.url) for u in self.requests), self.requests)
        self.assertEqual(self.errors, [])
        page.close()

    def test_page_works_under_its_csp(self):
        page = self.open(self.trained, bypass_csp=False)
        self.assertEqual(page.text_content("#model"), "whale-r2-tiny")
        self.send(page, "What is 2 + 2?")
        page.wait_for_selector(".msg.assistant .stats")
        self.assertTrue(page.locator(".msg.assistant .content").last.text_content().strip())
        self.assertEqual(self.errors, [])
        page.close()

    def test_stop_button(self):
        page = self.open(self.talker)
        page.fill("#maxTokens", "3500")
        page.dispatch_event("#maxTokens", "change")
        self.send(page, "Tell a long story")
        page.wait_for_function("document.querySelector('.msg.assistant .content').textContent.length > 20")
        self.assertTrue(page.is_visible("#stop"))
        page.click("#stop")
        self.wait_idle(page, timeout=10000)
        self.assertTrue(page.is_visible("#send"))
        self.assertEqual(page.locator(".msg.assistant .stats").last.text_content(), "stopped")
        deadline = time.time() + 10  # the server noticed the client left and cancelled the request
        while time.time() < deadline and self.talker.metric("whale:num_requests_running") > 0:
            time.sleep(0.1)
        self.assertEqual(self.talker.metric("whale:num_requests_running"), 0)
        self.assertLess(self.talker.metric("whale:generation_tokens_total"), 3500)
        self.assertEqual(self.errors, [])
        page.close()


if __name__ == "__main__":
    WHALE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
