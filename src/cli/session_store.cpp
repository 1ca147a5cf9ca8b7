#include "cli/session_store.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/durable.h"
#include "core/error.h"

namespace whale {

namespace fs = std::filesystem;

std::string default_sessions_dir() {
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/whale/sessions";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/whale/sessions";
}

void SessionStore::check_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 128 && name[0] != '.' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
                  });
  if (!ok) fail("session name '", name, "': use letters, digits, '-', '_' and '.' (not first), at most 128");
}

void SessionStore::save(const std::string& name, const nlohmann::ordered_json& session) {
  check_name(name);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail(dir_, ": cannot create the sessions directory: ", ec.message());
  const std::string path = dir_ + "/" + name + ".json", tmp = path + ".tmp";
  write_file_synced(tmp, session.dump(2) + "\n");
  fs::rename(tmp, path, ec);
  if (ec) fail(path, ": cannot save: ", ec.message());
  sync_directory(dir_);
}

std::vector<SessionInfo> SessionStore::list() const {
  std::vector<std::pair<fs::file_time_type, SessionInfo>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& e = *it;
    if (e.path().extension() != ".json") continue;
    try {
      std::ifstream in(e.path());
      const auto j = nlohmann::json::parse(in);
      SessionInfo s;
      s.name = e.path().stem().string();
      s.id = j.at("id").get<std::string>();
      s.model = j.value("model", "");
      s.saved_at = j.value("saved_at", "");
      s.messages = int64_t(j.at("messages").size());
      s.tokens = j.value("tokens", int64_t(0));
      found.emplace_back(e.last_write_time(ec), std::move(s));
    } catch (const std::exception&) {  // not a session (or damaged): not listed
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<SessionInfo> out;
  for (auto& [t, s] : found) out.push_back(std::move(s));
  return out;
}

std::string SessionStore::resolve(const std::string& key) const {
  if (key.empty()) fail("no session named (/sessions lists them)");
  std::error_code ec;
  bool valid_name = true;
  try {
    check_name(key);
  } catch (const Error&) {
    valid_name = false;
  }
  if (valid_name && fs::exists(dir_ + "/" + key + ".json", ec)) return key;
  std::vector<std::string> hits;
  if (key.size() >= 6 && key.find_first_not_of("0123456789abcdef") == std::string::npos)
    for (const SessionInfo& s : list())
      if (s.id.compare(0, key.size(), key) == 0) hits.push_back(s.name);
  if (hits.size() > 1) fail("session id prefix '", key, "' is ambiguous (", hits.size(), " sessions)");
  if (hits.empty()) fail("no session '", key, "' in ", dir_, " (/sessions lists them)");
  return hits[0];
}

nlohmann::ordered_json SessionStore::load(const std::string& key, std::string* name) const {
  const std::string n = resolve(key);
  const std::string path = dir_ + "/" + n + ".json";
  std::ifstream in(path);
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(in);
    if (!j.is_object() || !j.at("messages").is_array()) fail("no messages");
  } catch (const std::exception& e) {
    fail(path, ": not a whale session (", e.what(), ")");
  }
  if (name) *name = n;
  return j;
}

std::string SessionStore::drop(const std::string& key) {
  const std::string n = resolve(key);
  std::error_code ec;
  fs::remove(dir_ + "/" + n + ".json", ec);
  if (ec) fail(dir_, "/", n, ".json: cannot remove: ", ec.message());
  return n;
}

}  // namespace whale
