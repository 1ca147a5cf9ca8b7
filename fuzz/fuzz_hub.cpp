// libFuzzer target: what `whale pull` reads from the network and the user. The first byte picks
// the parser: the Hub's repository listing (then the file selection for several tags), or a
// catalog.json (then name parsing against it).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "hub/hub_api.h"
#include "hub/pull.h"
#include "hub/store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] & 1) {
      const whale::HubRepo repo = whale::parse_repo_listing(text, "owner/name", "main", "fuzz");
      for (const char* tag : {"", "Q4_K_M", "q8_0", "model-00001-of-00002.gguf"}) {
        try {
          whale::ModelRef ref;
          ref.repo = "owner/name";
          ref.quant = tag;
          std::string format;
          whale::select_model_files(repo, ref, &format);
          ref.key();
        } catch (const whale::Error&) {
        }
      }
    } else {
      const whale::Catalog c = whale::Catalog::parse(text, "fuzz");
      for (const char* name : {"deepseek-v4-flash", "deepseek-v4-flash:q4_k_m", "tiny", "tiny:Q8_0", "a/b:c.gguf", "x:"})
        try {
          if (auto ref = whale::parse_model_name(name, c)) ref->key();
        } catch (const whale::Error&) {
        }
    }
  } catch (const whale::Error&) {
  }
  return 0;
}
