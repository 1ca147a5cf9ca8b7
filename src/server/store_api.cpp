// Ollama's model-management endpoints over whale's model store (hub/store.h): /api/tags lists
// the stored models beside the one being served, /api/pull downloads into the store with
// Ollama's NDJSON progress events, /api/delete removes a stored model.
#include <map>

#include "core/error.h"
#include "formats/gguf.h"
#include "hub/pull.h"
#include "model/gguf_model.h"
#include "model/hf_config.h"
#include "server/api.h"

namespace whale {

using namespace api;

namespace {

std::string model_field(const ojson& b) {
  for (const char* k : {"model", "name"})
    if (auto it = b.find(k); it != b.end()) {
      if (!it->is_string() || it->get<std::string>().empty()) throw ApiError(400, std::string("'") + k + "' must be a non-empty string", k);
      return it->get<std::string>();
    }
  throw ApiError(400, "'model' is required", "model");
}

std::string rfc3339(int64_t t) {
  char buf[32];
  const time_t tt = time_t(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

ojson stored_model_tag(const StoredModel& m) {
  return {{"name", m.name},
          {"model", m.name},
          {"modified_at", rfc3339(m.pulled_at)},
          {"size", m.bytes},
          {"digest", m.commit},
          {"details",
           {{"parent_model", ""},
            {"format", m.format},
            {"family", "deepseek"},
            {"families", ojson::array({"deepseek"})},
            {"parameter_size", ""},
            {"quantization_level", m.quant}}}};
}

Reply ollama_pull(const ojson& body, const ModelStore& store) {
  const std::string name = model_field(body);
  const bool stream = body.value("stream", true);
  const Catalog catalog = Catalog::load(store.root());
  std::optional<ModelRef> ref = parse_model_name(name, catalog);
  if (!ref) throw ApiError(400, "'" + name + "' is neither a catalogue name nor a Hugging Face repository (owner/name[:QUANT])", "model");
  auto run = [ref = *ref, &store](const std::function<bool(std::string_view)>* write) {
    std::map<std::string, uint64_t> sent;  // per digest: the last `completed` sent
    bool listed = false, verifying = false;
    auto emit = [&](const ojson& j) {
      if (write && !(*write)(j.dump() + "\n")) throw ApiError(499, "client went away");
    };
    pull_model(store, ref, HubClient(), PullOptions(), [&](const PullProgress& p) {
      if (!listed) {
        listed = true;
        emit({{"status", "pulling manifest"}});
      }
      if (p.stage == PullProgress::Listing) return;
      for (const PullProgress::File& f : p.files) {
        auto it = sent.find(f.digest);
        if (it != sent.end() && it->second == f.done) continue;
        sent[f.digest] = f.done;
        const std::string hex = f.digest.substr(f.digest.find(':') + 1);
        emit({{"status", "pulling " + hex.substr(0, 12)}, {"digest", f.digest}, {"total", f.size}, {"completed", f.done}});
      }
      if (p.stage >= PullProgress::Verifying && !verifying) {
        verifying = true;
        emit({{"status", "verifying sha256 digest"}});
        emit({{"status", "writing manifest"}});
      }
    });
    emit({{"status", "success"}});
  };
  Reply r;
  if (!stream) {
    try {
      run(nullptr);
    } catch (const ApiError&) {
      throw;
    } catch (const Error& e) {
      throw ApiError(std::string(e.what()).find("no repository") != std::string::npos ? 404 : 500, e.what());
    }
    r.body = ojson{{"status", "success"}}.dump();
    return r;
  }
  r.content_type = "application/x-ndjson";
  r.stream = [run](const std::function<bool(std::string_view)>& write) {
    try {
      run(&write);
    } catch (const ApiError&) {  // the client is gone
    } catch (const std::exception& e) {
      write(ojson{{"error", e.what()}}.dump() + "\n");  // Ollama reports failures mid-stream this way
    }
  };
  return r;
}

Reply ollama_show_stored(const StoredModel& m) {
  const std::string path = m.model_path();
  ModelConfig c;
  try {
    c = is_gguf_file(path) ? gguf_model_config(*GgufFile::open(path)) : load_hf_config(path);
  } catch (const Error& e) {
    throw ApiError(400, "model '" + m.name + "' is in the store but its configuration cannot be read: " + e.what(), "model");
  }
  ojson tag = stored_model_tag(m);
  Reply r;
  r.body = ojson{{"modelfile", ""},
                 {"parameters", ""},
                 {"template", ""},
                 {"details", tag["details"]},
                 {"model_info", ollama_model_info(c, m.name)},
                 {"capabilities", ojson::array({"completion"})},
                 {"modified_at", tag["modified_at"]}}
              .dump();
  return r;
}

Reply ollama_delete(const ojson& body, const ModelStore& store) {
  const std::string name = model_field(body);
  std::optional<StoredModel> m = store.find(name, Catalog::load(store.root()));
  if (!m) throw ApiError(404, "model '" + name + "' not found", "model");
  store.remove(*m);
  return Reply{};
}

}  // namespace whale
