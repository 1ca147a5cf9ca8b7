#include "hub/store.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/durable.h"
#include "core/error.h"
#include "hub/hub_api.h"

namespace whale {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The names `whale pull` knows without a repository id. Best knowledge of where DeepSeek and
// the GGUF makers publish; a user's catalog.json corrects or extends it.
const char* kBuiltinCatalog = R"json({
  "deepseek-v4-flash": {"repo": "deepseek-ai/DeepSeek-V4-Flash", "gguf": "unsloth/DeepSeek-V4-Flash-GGUF", "about": "DeepSeek-V4-Flash, 284B MoE (13B active), 1M context"},
  "deepseek-v4-pro": {"repo": "deepseek-ai/DeepSeek-V4-Pro", "gguf": "unsloth/DeepSeek-V4-Pro-GGUF", "about": "DeepSeek-V4-Pro, 1.6T MoE (49B active)"},
  "deepseek-v3.2": {"repo": "deepseek-ai/DeepSeek-V3.2", "gguf": "unsloth/DeepSeek-V3.2-GGUF", "about": "DeepSeek-V3.2, 671B MoE with sparse attention"},
  "deepseek-v3.2-exp": {"repo": "deepseek-ai/DeepSeek-V3.2-Exp", "gguf": "unsloth/DeepSeek-V3.2-Exp-GGUF", "about": "DeepSeek-V3.2-Exp"},
  "deepseek-v3.1": {"repo": "deepseek-ai/DeepSeek-V3.1", "gguf": "unsloth/DeepSeek-V3.1-GGUF", "about": "DeepSeek-V3.1, hybrid thinking"},
  "deepseek-v3": {"repo": "deepseek-ai/DeepSeek-V3-0324", "gguf": "unsloth/DeepSeek-V3-0324-GGUF", "about": "DeepSeek-V3-0324, 671B MoE"},
  "deepseek-r1": {"repo": "deepseek-ai/DeepSeek-R1-0528", "gguf": "unsloth/DeepSeek-R1-0528-GGUF", "about": "DeepSeek-R1-0528, reasoning"},
  "deepseek-v2.5": {"repo": "deepseek-ai/DeepSeek-V2.5", "about": "DeepSeek-V2.5, 236B MoE"},
  "deepseek-v2-lite": {"repo": "deepseek-ai/DeepSeek-V2-Lite-Chat", "gguf": "bartowski/DeepSeek-V2-Lite-Chat-GGUF", "about": "DeepSeek-V2-Lite-Chat, 16B MoE (2.4B active)"},
  "deepseek-ocr-2": {"repo": "deepseek-ai/DeepSeek-OCR-2", "about": "DeepSeek-OCR-2 (whale cannot run image models yet)"}
})json";

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  return s;
}
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

void read_entries(const json& j, const std::string& source, std::map<std::string, CatalogEntry>& out) {
  if (!j.is_object()) fail(source, ": a catalogue is a JSON object {\"name\": {\"repo\": \"owner/name\", ...}}");
  for (const auto& [name, v] : j.items()) {
    const std::string where = source + ": entry '" + name + "'";
    if (name.empty() || name.find(':') != std::string::npos || name.find('/') != std::string::npos)
      fail(where, ": a name may not be empty or contain ':' or '/'");
    if (!v.is_object()) fail(where, ": not an object");
    CatalogEntry e;
    for (const auto& [k, field] : v.items()) {
      if (!field.is_string()) fail(where, ": \"", k, "\" is not a string");
      const std::string s = field.get<std::string>();
      if (k == "repo") e.repo = s;
      else if (k == "gguf") e.gguf = s;
      else if (k == "quant") e.quant = upper(s);
      else if (k == "about") e.about = s;
      else fail(where, ": unknown field \"", k, "\" (repo, gguf, quant, about)");
    }
    if (e.repo.empty() && e.gguf.empty()) fail(where, ": names neither \"repo\" nor \"gguf\"");
    for (const std::string* r : {&e.repo, &e.gguf})
      if (!r->empty() && !is_repo_id(*r)) fail(where, ": '", *r, "' is not a repository id (owner/name)");
    out[lower(name)] = e;
  }
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<StoredModel> read_manifest(const fs::path& dir) {
  std::ifstream f(dir / ModelStore::manifest_name());
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;  // damaged: not listed, `whale pull` redoes it
  try {
    StoredModel m;
    m.key = dir.filename().string();
    m.dir = dir.string();
    m.name = j.at("name").get<std::string>();
    m.repo = j.at("repo").get<std::string>();
    m.revision = j.value("revision", "main");
    m.commit = j.value("commit", "");
    m.quant = j.value("quant", "");
    m.format = j.at("format").get<std::string>();
    m.pulled_at = j.value("pulled_at", int64_t(0));
    m.last_used = j.value("last_used", int64_t(0));
    for (const auto& x : j.at("files")) {
      StoredFile sf{x.at("path").get<std::string>(), x.at("size").get<uint64_t>(), x.value("sha256", ""), x.value("git_sha1", "")};
      m.bytes += sf.size;
      m.files.push_back(std::move(sf));
    }
    return m;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string ModelRef::key() const {
  std::string k = repo;
  const size_t slash = k.find('/');
  if (slash != std::string::npos) k.replace(slash, 1, "--");
  if (!quant.empty()) {
    std::string q = quant;
    for (char& c : q)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') c = '_';
    k += "--" + q;
  }
  return k;
}

Catalog Catalog::load(const std::string& store_root) {
  Catalog c;
  read_entries(json::parse(kBuiltinCatalog), "the built-in catalogue", c.entries_);
  std::string user = std::getenv("WHALE_CATALOG") ? std::getenv("WHALE_CATALOG") : "";
  const bool named = !user.empty();
  if (user.empty()) user = store_root + "/catalog.json";
  std::ifstream f(user);
  if (!f) {
    if (named) fail(user, " ($WHALE_CATALOG): cannot read it");
    return c;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), user);
}

Catalog Catalog::parse(const std::string& json_text, const std::string& source) {
  Catalog c;
  read_entries(json::parse(kBuiltinCatalog), "the built-in catalogue", c.entries_);
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded()) fail(source, ": not valid JSON");
  read_entries(j, source, c.entries_);
  return c;
}

const CatalogEntry* Catalog::find(const std::string& name) const {
  auto it = entries_.find(lower(name));
  return it == entries_.end() ? nullptr : &it->second;
}

std::optional<ModelRef> parse_model_name(const std::string& text, const Catalog& catalog) {
  std::string base = text, tag;
  if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    base = text.substr(0, colon);
    tag = text.substr(colon + 1);
    if (tag.empty()) return std::nullopt;
  }
  ModelRef r;
  const bool file_tag = lower(tag).size() > 5 && lower(tag).substr(tag.size() - 5) == ".gguf";
  if (const CatalogEntry* e = catalog.find(base)) {
    r.name = lower(text);
    if (!tag.empty()) {
      if (e->gguf.empty()) fail("'", base, "' has no GGUF files in the catalogue; pull '", base, "' (safetensors) or name a GGUF repository as owner/name:QUANT");
      r.repo = e->gguf;
      r.quant = file_tag ? tag : upper(tag);
    } else if (!e->repo.empty()) {
      r.repo = e->repo;
    } else {
      r.repo = e->gguf;
      r.quant = e->quant;
    }
    return r;
  }
  if (!is_repo_id(base)) return std::nullopt;
  r.repo = base;
  r.quant = file_tag ? tag : upper(tag);
  r.name = r.quant.empty() ? base : base + ":" + r.quant;
  return r;
}

std::string StoredModel::model_path() const {
  if (format != "gguf") return dir;
  std::vector<std::string> ggufs;
  for (const StoredFile& f : files) {
    const std::string base = lower(fs::path(f.path).filename().string());
    if (base.size() > 5 && base.substr(base.size() - 5) == ".gguf" && base.find("mmproj") == std::string::npos) ggufs.push_back(f.path);
  }
  std::sort(ggufs.begin(), ggufs.end());
  return ggufs.empty() ? dir : dir + "/" + ggufs.front();
}

ModelStore::ModelStore(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string ModelStore::default_root() {
  if (const char* m = std::getenv("WHALE_MODELS"); m && *m) return m;
  std::string cache;
  if (const char* d = std::getenv("WHALE_CACHE_DIR"); d && *d) cache = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) cache = std::string(x) + "/whale";
  else cache = std::string(std::getenv("HOME") && *std::getenv("HOME") ? std::getenv("HOME") : ".") + "/.cache/whale";
  return cache + "/models";
}

std::vector<StoredModel> ModelStore::list() const {
  std::vector<StoredModel> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(root_) / "models", ec))
    if (e.is_directory(ec))
      if (auto m = read_manifest(e.path())) out.push_back(std::move(*m));
  std::sort(out.begin(), out.end(), [](const StoredModel& a, const StoredModel& b) { return a.name < b.name; });
  return out;
}

std::optional<StoredModel> ModelStore::get(const std::string& key) const {
  if (key.empty() || key.find('/') != std::string::npos || key == "." || key == "..") return std::nullopt;
  return read_manifest(fs::path(model_dir(key)));
}

std::optional<StoredModel> ModelStore::find(const std::string& text, const Catalog& catalog) const {
  for (StoredModel& m : list())
    if (m.name == text || lower(m.name) == lower(text)) return m;
  std::optional<ModelRef> ref;
  try {
    ref = parse_model_name(text, catalog);
  } catch (const Error&) {
    return std::nullopt;
  }
  if (!ref) return std::nullopt;
  if (auto m = get(ref->key())) return m;
  // A GGUF repository pulled without a tag is stored under the tag it defaulted to.
  if (ref->quant.empty())
    for (StoredModel& m : list())
      if (m.repo == ref->repo) return m;
  return std::nullopt;
}

bool ModelStore::remove(const StoredModel& m) const {
  std::error_code ec;
  bool any = false;
  for (const std::string& d : {model_dir(m.key), partial_dir(m.key)}) {
    if (!fs::exists(d, ec)) continue;
    // Renamed first so that a reader never finds a half-deleted model under its name.
    const std::string doomed = root_ + "/partial/.deleting-" + m.key;
    fs::create_directories(root_ + "/partial", ec);
    fs::remove_all(doomed, ec);
    if (fs::rename(d, doomed, ec); ec) fail("cannot delete ", d, ": ", ec.message());
    fs::remove_all(doomed, ec);
    if (ec) fail("cannot delete ", doomed, ": ", ec.message());
    any = true;
  }
  fs::remove(partial_dir(m.key) + ".lock", ec);
  return any;
}

void ModelStore::touch(const StoredModel& m) const {
  StoredModel t = m;
  t.last_used = now_s();
  try {
    write_manifest(m.dir, t);
  } catch (const Error&) {  // a read-only store still serves its models
  }
}

void ModelStore::write_manifest(const std::string& dir, const StoredModel& m) {
  json files = json::array();
  for (const StoredFile& f : m.files) {
    json x = {{"path", f.path}, {"size", f.size}};
    if (!f.sha256.empty()) x["sha256"] = f.sha256;
    if (!f.git_sha1.empty()) x["git_sha1"] = f.git_sha1;
    files.push_back(x);
  }
  const json j = {{"name", m.name},           {"repo", m.repo},         {"revision", m.revision}, {"commit", m.commit},
                  {"quant", m.quant},         {"format", m.format},     {"pulled_at", m.pulled_at ? m.pulled_at : now_s()},
                  {"last_used", m.last_used}, {"files", files}};
  const std::string tmp = dir + "/" + manifest_name() + ".tmp";
  write_file_synced(tmp, j.dump(2) + "\n");
  std::error_code ec;
  fs::rename(tmp, dir + "/" + manifest_name(), ec);
  if (ec) fail("cannot write ", dir, "/", manifest_name(), ": ", ec.message());
}

std::string format_bytes(uint64_t b) {
  char buf[32];
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace whale
