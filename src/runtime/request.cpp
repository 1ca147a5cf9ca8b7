#include "runtime/request.h"

#include <iterator>

namespace whale {

void RequestOutput::append(RequestOutput&& more) {
  events.insert(events.end(), std::make_move_iterator(more.events.begin()), std::make_move_iterator(more.events.end()));
  logprobs.insert(logprobs.end(), std::make_move_iterator(more.logprobs.begin()),
                  std::make_move_iterator(more.logprobs.end()));
  if (!more.finished) return;
  finished = true;
  stats = std::move(more.stats);
  result = std::move(more.result);
  tokens = std::move(more.tokens);
  stop_token = more.stop_token;
  error = std::move(more.error);
  ttft_seconds = more.ttft_seconds;
}

bool RequestHandle::wait(RequestOutput& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (drained_) return false;
  cv_.wait_for(lock, timeout, [&] { return pending_.finished || !pending_.events.empty() || !pending_.logprobs.empty(); });
  out = std::exchange(pending_, RequestOutput{});
  if (out.finished) drained_ = true;
  return true;
}

RequestOutput RequestHandle::wait_finished() {
  RequestOutput all, part;
  while (wait(part, std::chrono::milliseconds(1000))) all.append(std::move(part));
  return all;
}

void RequestHandle::deliver(RequestOutput&& more) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.append(std::move(more));
  }
  cv_.notify_all();
}

}  // namespace whale
