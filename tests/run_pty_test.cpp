// `whale run` driven through a pseudo-terminal, as a user at a keyboard drives it.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "model/hf_config.h"
#include "model/random_checkpoint.h"
#include "test_util.h"

namespace whale {
namespace {

// A tiny random-weight V3-layout model with the real DeepSeek-V3 tokenizer.
std::string make_chat_model(const test::TempDir& dir) {
  auto cfg = nlohmann::json::parse(test::read_file(test::golden_dir("v3") + "/config.json"));
  cfg["vocab_size"] = 129280;
  const std::string text = cfg.dump();
  ThreadPool pool(2);
  const std::string path = dir / "model";
  write_random_checkpoint(text, parse_hf_config(text, "cfg"), path, {}, pool);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    test::write_file(path + "/" + f, test::read_file(test::deepseek_v3_tokenizer() + "/" + f));
  return path;
}

class Pty {
 public:
  explicit Pty(const std::vector<std::string>& args) {
    pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      setenv("TERM", "xterm", 1);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~Pty() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(fd_);
  }
  void send(const std::string& s) { ASSERT_EQ(write(fd_, s.data(), s.size()), ssize_t(s.size())); }
  // Reads until `needle` appears in the output since the last call; false on timeout.
  bool expect(const std::string& needle, double seconds = 20) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      const size_t p = out_.find(needle, consumed_);
      if (p != std::string::npos) {
        consumed_ = p + needle.size();
        return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, int(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return out_.find(needle, consumed_) != std::string::npos;
      out_.append(buf, size_t(n));
    }
  }
  // The exit status, or -1 if the process has not exited within `seconds` (it is then killed).
  int wait_exit(double seconds = 20) {
    if (exited_) return status_;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) return -1;
      expect("\x01never\x01", 0.05);  // keep draining the terminal so the child never blocks on output
    }
    exited_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -2;
    return status_;
  }
  const std::string& output() const { return out_; }

 private:
  int fd_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = -1;
  std::string out_;
  size_t consumed_ = 0;
};

TEST(RunPty, InteractiveChat) {
  test::TempDir dir;
  const std::string model = make_chat_model(dir);
  Pty p({WHALE_BINARY, "run", model, "--chat-format", "v3.1", "--temperature", "0", "--max-tokens", "24", "-t", "2"});
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("/help\n");
  ASSERT_TRUE(p.expect("/budget N|off")) << p.output();
  ASSERT_TRUE(p.expect(">>> "));
  p.send("/think on\n");
  ASSERT_TRUE(p.expect("Thinking on.")) << p.output();
  p.send("/budget 3\n");
  ASSERT_TRUE(p.expect("Thinking budget 3 tokens.")) << p.output();
  p.send("你好 there\n");  // typed UTF-8 must reach the model intact
  ASSERT_TRUE(p.expect("\x1b[2m")) << "reasoning is shown dimmed: " << p.output();
  ASSERT_TRUE(p.expect("\x1b[0m")) << p.output();
  ASSERT_TRUE(p.expect("tokens/s")) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("/collapse on\n");
  ASSERT_TRUE(p.expect("Reasoning collapsed.")) << p.output();
  p.send("Again\n");
  ASSERT_TRUE(p.expect("Thinking... done (")) << p.output();
  EXPECT_EQ(p.output().find("Thinking... Thinking"), std::string::npos) << p.output();  // said once
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("/expand\n");
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("/save " + (dir / "chat.json") + "\n");
  ASSERT_TRUE(p.expect("Saved 4 messages")) << p.output();
  p.send("/clear\n");
  ASSERT_TRUE(p.expect("Conversation cleared.")) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("\x03");  // Ctrl-C at the prompt does not quit
  ASSERT_TRUE(p.expect("Use Ctrl-D or /bye to exit.")) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();  // typed-ahead keys may be flushed before the prompt
  p.send("\x04");  // Ctrl-D quits, even when it lands before the line editor enters raw mode
  EXPECT_EQ(p.wait_exit(), 0) << p.output();

  auto saved = nlohmann::json::parse(test::read_file(dir / "chat.json"));
  ASSERT_EQ(saved["messages"].size(), 4u);
  EXPECT_EQ(saved["messages"][0]["content"], "你好 there");
  EXPECT_EQ(saved["messages"][1]["role"], "assistant");
  EXPECT_TRUE(saved["messages"][1].contains("reasoning_content"));
}

TEST(RunPty, CtrlCStopsTheAnswerNotTheChat) {
  test::TempDir dir;
  const std::string model = make_chat_model(dir);
  Pty p({WHALE_BINARY, "run", model, "--temperature", "0", "--max-tokens", "100000", "--ctx", "60000", "-t", "1"});
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("Write a very long story\n");
  ASSERT_TRUE(p.expect("story\r\n", 20));  // the line was entered; the answer streams from here
  usleep(1500 * 1000);
  p.send("\x03");
  ASSERT_TRUE(p.expect("[stopped]", 20)) << p.output();
  ASSERT_TRUE(p.expect(">>> ")) << p.output();
  p.send("/bye\n");
  EXPECT_EQ(p.wait_exit(), 0) << p.output();
}

TEST(RunPty, OneShotPipedAndJson) {
  test::TempDir dir;
  const std::string model = make_chat_model(dir);
  auto r = test::run_whale({"run", model, "Say hi", "--temperature", "0", "--max-tokens", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos);  // stats go to stderr when stdout is not a terminal
  EXPECT_EQ(r.out.find("\x1b["), std::string::npos);     // no escape codes in a pipe

  r = test::run_whale({"run", model, "--json", "--chat-format", "v3.1", "--think", "--budget", "2", "--temperature", "0",
                       "--max-tokens", "12"},
                      "piped question\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["reasoning_content"].get<std::string>().empty());
  EXPECT_FALSE(j["content"].get<std::string>().empty());  // the budget forced the answer to start
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["finish_reason"], "length");

  r = test::run_whale({"run", model, "--json", "--chat-format", "v3.1", "--no-think", "--temperature", "0", "--max-tokens", "6"},
                      "q");
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["reasoning_content"], "");  // thinking off: everything is the answer

  r = test::run_whale({"run", dir / "missing", "hi"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no config.json"), std::string::npos) << r.err;

  // A model directory whose tokenizer_config.json has no chat template: a clear error, or an override.
  auto cfg = nlohmann::json::parse(test::read_file(model + "/tokenizer_config.json"));
  cfg.erase("chat_template");
  test::write_file(model + "/tokenizer_config.json", cfg.dump());
  r = test::run_whale({"run", model, "hi", "--max-tokens", "2"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("tokenizer_config.json: no chat_template"), std::string::npos) << r.err;
  r = test::run_whale({"run", model, "hi", "--max-tokens", "2", "--chat-format", "v3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::remove((model + "/tokenizer.json").c_str());
  r = test::run_whale({"run", model, "hi"});
  EXPECT_NE(r.err.find("no tokenizer.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace whale
