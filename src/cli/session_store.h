// Saved conversations of `whale run` (/save, /sessions, /load, /drop): one JSON file per
// session in a directory ($XDG_DATA_HOME/whale/sessions by default). A session holds the
// messages and settings, never cache bytes: its KV blocks live in the KV cache's tiers under
// their content addresses (runtime/block_key.h), so a resumed conversation finds them there,
// and whatever was collected since is recomputed. Files are written durably (temporary name,
// fsync, rename).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace whale {

struct SessionInfo {
  std::string name, id, model, saved_at;
  int64_t messages = 0, tokens = 0;
};

class SessionStore {
 public:
  explicit SessionStore(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }

  // Names: letters, digits, '-', '_' and '.', not starting with '.'; Error otherwise.
  static void check_name(const std::string& name);
  void save(const std::string& name, const nlohmann::ordered_json& session);
  std::vector<SessionInfo> list() const;  // newest first; unreadable files are skipped
  // By name or by a unique prefix (6+ hex digits) of the id; Error naming what is wrong.
  nlohmann::ordered_json load(const std::string& name_or_id, std::string* name = nullptr) const;
  std::string drop(const std::string& name_or_id);  // returns the name removed

 private:
  std::string resolve(const std::string& name_or_id) const;
  std::string dir_;
};

// $XDG_DATA_HOME/whale/sessions, else ~/.local/share/whale/sessions.
std::string default_sessions_dir();

}  // namespace whale
