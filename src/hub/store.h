// The local model store: models pulled from the Hub, one folder each, under
// $WHALE_MODELS (default ~/.cache/whale/models), and the names people type for them.
//
//   models/OWNER--NAME[--QUANT]/   a complete model: its files + whale-manifest.json
//   partial/OWNER--NAME[--QUANT]/  a pull in progress (*.part files and their chunk logs)
//
// A model folder appears only when every file is downloaded and verified (the partial folder
// is renamed into models/), so readers never see half a model.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace whale {

// What a name refers to: a repository, and for GGUF repositories a quantization tag.
struct ModelRef {
  std::string repo;      // owner/name
  std::string quant;     // GGUF tag as typed upper-cased ("Q4_K_M"), or a file name; empty: safetensors, or the default GGUF
  std::string revision = "main";
  std::string name;      // the name to show: the catalogue's ("deepseek-v2-lite") or repo[:quant]
  std::string key() const;  // the store folder: OWNER--NAME[--QUANT]
};

// Built-in names (deepseek-v4-flash, deepseek-v4-flash:q4_k_m, ...) and the user's own, read from
// $WHALE_CATALOG or STORE/catalog.json: {"name": {"repo": "owner/name", "gguf": "owner/name-GGUF",
// "quant": "Q4_K_M", "about": "..."}}; the user's entries replace built-in ones of the same name.
struct CatalogEntry {
  std::string repo;   // safetensors repository ("" if the name only has GGUF files)
  std::string gguf;   // GGUF repository, for NAME:QUANT
  std::string quant;  // the default quantization when the entry has no safetensors repository
  std::string about;
};

class Catalog {
 public:
  static Catalog load(const std::string& store_root);  // built-in + user file; bad user files are clear errors
  // The built-in entries and those of `json_text` (`source` names it in errors).
  static Catalog parse(const std::string& json_text, const std::string& source);
  const CatalogEntry* find(const std::string& name) const;
  const std::map<std::string, CatalogEntry>& entries() const { return entries_; }

 private:
  std::map<std::string, CatalogEntry> entries_;
};

// NAME[:QUANT] from the catalogue, OWNER/NAME, OWNER/NAME:QUANT (a tag, or a .gguf file of the
// repository); nullopt for anything else (such as a path).
std::optional<ModelRef> parse_model_name(const std::string& text, const Catalog& catalog);

struct StoredFile {
  std::string path;
  uint64_t size = 0;
  std::string sha256, git_sha1;
};

struct StoredModel {
  std::string key, name, repo, revision, commit, quant;
  std::string format;  // "safetensors" or "gguf"
  std::string dir;     // absolute folder
  uint64_t bytes = 0;
  int64_t pulled_at = 0, last_used = 0;  // unix seconds
  std::vector<StoredFile> files;
  // What the loaders take: the folder (safetensors) or the first GGUF file that is not a
  // multimodal projector (the first part of a split set).
  std::string model_path() const;
};

class ModelStore {
 public:
  explicit ModelStore(std::string root);
  static std::string default_root();  // $WHALE_MODELS, else $WHALE_CACHE_DIR|$XDG_CACHE_HOME/whale|~/.cache/whale + /models

  const std::string& root() const { return root_; }
  std::string model_dir(const std::string& key) const { return root_ + "/models/" + key; }
  std::string partial_dir(const std::string& key) const { return root_ + "/partial/" + key; }

  std::vector<StoredModel> list() const;  // complete models, by name
  std::optional<StoredModel> get(const std::string& key) const;
  // A model by what a user typed: a stored name, a catalogue name, owner/name[:quant].
  std::optional<StoredModel> find(const std::string& text, const Catalog& catalog) const;
  // Deletes a model's folder (and any partial pull of it). False if there is none.
  bool remove(const StoredModel& m) const;
  void touch(const StoredModel& m) const;  // records "last used" (best effort)

  static std::string manifest_name() { return "whale-manifest.json"; }
  static void write_manifest(const std::string& dir, const StoredModel& m);

 private:
  std::string root_;
};

std::string format_bytes(uint64_t bytes);  // "1.5 GiB"

}  // namespace whale
