// Helpers for tests that drive the engine.
#pragma once
#include <memory>
#include <vector>

#include "runtime/engine.h"

namespace whale::test {

// Submits the requests at once (they run concurrently) and returns each one's whole output.
inline std::vector<RequestOutput> run_all(Engine& e, const std::vector<EngineRequest>& rs) {
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& r : rs) hs.push_back(e.submit(r));
  std::vector<RequestOutput> outs;
  for (auto& h : hs) {
    RequestOutput all, part;
    while (h->wait(part)) all.append(std::move(part)), part = RequestOutput{};
    outs.push_back(std::move(all));
  }
  return outs;
}

}  // namespace whale::test
