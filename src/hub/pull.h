// `whale pull`: a model from the Hugging Face Hub into the local store (store.h).
//
// Files are fetched in chunks over several connections (ranged GETs); every finished chunk is
// synced to disk and logged beside the partial file, so a pull that is interrupted (network,
// Ctrl-C, kill -9) resumes where it stopped. A file becomes visible under its name only after
// its SHA-256 (LFS) or git blob id matches the Hub's listing, and the model folder only when
// every file has.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hub/hub_api.h"
#include "hub/store.h"

namespace whale {

struct PullOptions {
  int connections = 8;
  uint64_t chunk_bytes = 64ull << 20;
  int attempts = 6;  // per chunk, for transient failures (dropped connections, 5xx, 429)
};

// A snapshot of a pull, for progress bars and Ollama's /api/pull events.
struct PullProgress {
  enum Stage { Listing, Downloading, Verifying, Done } stage = Listing;
  struct File {
    std::string path, digest;  // digest: "sha256:HEX" or "sha1:HEX" (git)
    uint64_t size = 0, done = 0;
    bool verified = false;
  };
  std::vector<File> files;
  uint64_t total = 0, done = 0;  // bytes of all files; done includes what earlier pulls left
  uint64_t fetched = 0;          // bytes downloaded by this pull
  double seconds = 0;            // since the downloads started
  bool resumed = false;          // earlier pulls had left part of it
  bool up_to_date = false;       // nothing to do: the store has this commit
};
// Called from the thread that called pull_model, a few times a second and once at the end.
using PullProgressFn = std::function<void(const PullProgress&)>;

// The files of `repo` a model needs: config, tokenizer, chat template and weights for
// safetensors repositories; the GGUF file or split set of the tag (and a multimodal projector
// if there is one) for GGUF repositories. Errors list what is available.
std::vector<HubFile> select_model_files(const HubRepo& repo, ModelRef& ref, std::string* format);

// Pulls `ref` into `store`. `cancel` (optional) stops it between bytes; the partial files stay for
// a later pull. Throws Error with a clear message; returns the stored model.
StoredModel pull_model(const ModelStore& store, ModelRef ref, const HubClient& hub, const PullOptions& o,
                       const PullProgressFn& progress, const std::atomic<bool>* cancel = nullptr);

}  // namespace whale
