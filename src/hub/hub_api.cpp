#include "hub/hub_api.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

namespace whale {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// $HF_TOKEN, else the file `huggingface-cli login` writes ($HF_HOME/token, ~/.cache/huggingface/token).
std::string default_token() {
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})
    if (std::string t = env(name); !t.empty()) return t;
  std::string home = env("HF_HOME");
  if (home.empty()) home = (env("XDG_CACHE_HOME").empty() ? env("HOME") + "/.cache" : env("XDG_CACHE_HOME")) + "/huggingface";
  std::ifstream f(home + "/token");
  std::string t;
  std::getline(f, t);
  while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
  return t;
}

bool is_hex(const std::string& s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// File names come from the network: relative, no '.', '..' or empty components, no control
// characters or backslashes, and none of the names the store itself uses beside the files.
bool safe_path(const std::string& p) {
  if (p.empty() || p.size() > 1024 || p.front() == '/' || p.back() == '/') return false;
  for (unsigned char c : p)
    if (c < 0x20 || c == 0x7f || c == '\\') return false;
  size_t start = 0;
  while (start <= p.size()) {
    const size_t end = std::min(p.find('/', start), p.size());
    const std::string part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  auto ends = [&](const std::string& suf) { return p.size() >= suf.size() && p.compare(p.size() - suf.size(), suf.size(), suf) == 0; };
  return !ends(".part") && !ends(".part.log") && p != "whale-manifest.json" && p.rfind("whale-manifest.json", 0) != 0;
}

}  // namespace

bool is_repo_id(const std::string& id) {
  static const std::regex re(R"([A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})");
  return std::regex_match(id, re) && id.find("..") == std::string::npos;
}

HubClient::HubClient() : HubClient(env("HF_ENDPOINT"), default_token()) {}

HubClient::HubClient(std::string endpoint, std::string token) : endpoint_(std::move(endpoint)) {
  if (endpoint_.empty()) endpoint_ = "https://huggingface.co";
  while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
  http_.bearer_token = std::move(token);
}

HubRepo HubClient::repo(const std::string& id, const std::string& revision) const {
  WHALE_CHECK(is_repo_id(id), "'", id, "' is not a Hugging Face repository id (owner/name)");
  const std::string url = endpoint_ + "/api/models/" + id + "/revision/" + url_encode(revision) + "?blobs=true";
  HttpResponse r;
  try {
    r = http_get(url, http_);
  } catch (const HttpError& e) {
    const bool token = !http_.bearer_token.empty();
    if (e.code == "RevisionNotFound") fail(id, ": no revision '", revision, "' on ", endpoint_);
    if (e.code == "GatedRepo" || (e.status == 403))
      fail(id, " is gated: accept its terms on ", endpoint_, "/", id,
           token ? " with the account of your HF_TOKEN" : " and set HF_TOKEN to a token of that account", " (", e.what(), ")");
    if (e.code == "RepositoryNotFound" || e.status == 404 || e.status == 401)
      fail("no repository ", id, " on ", endpoint_,
           e.status == 401 ? (token ? " that your HF_TOKEN can read" : " (if it is private or gated, set HF_TOKEN)") : "", " (",
           e.what(), ")");
    fail("cannot list ", id, " on ", endpoint_, ": ", e.what());
  }
  return parse_repo_listing(r.body, id, revision, url);
}

HubRepo parse_repo_listing(const std::string& body, const std::string& id, const std::string& revision,
                           const std::string& source) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(source, ": the Hub's answer is not a JSON object");
  HubRepo repo;
  repo.id = id;
  repo.revision = revision;
  // A size must be a whole number of bytes (a float beyond 2^64 would not convert).
  auto size_of = [&](const nlohmann::json& v, const std::string& path) -> uint64_t {
    if (!v.is_number_unsigned()) fail(source, ": the file '", path, "' has no valid size");
    return v.get<uint64_t>();
  };
  try {
    repo.commit = j.value("sha", std::string());
    if (!is_hex(repo.commit, 40)) fail(source, ": the Hub's answer names no commit (\"sha\": 40 hex digits)");
    for (const auto& s : j.at("siblings")) {
      HubFile f;
      f.path = s.at("rfilename").get<std::string>();
      if (s.contains("lfs") && s["lfs"].is_object()) {
        f.sha256 = s["lfs"].at("sha256").get<std::string>();
        f.size = size_of(s["lfs"].at("size"), f.path);
      } else {
        f.git_sha1 = s.value("blobId", std::string());
        f.size = size_of(s.at("size"), f.path);
      }
      if (!safe_path(f.path)) fail(source, ": refusing the file name '", f.path, "'");
      if (f.sha256.empty() ? !is_hex(f.git_sha1, 40) : !is_hex(f.sha256, 64))
        fail(source, ": the file '", f.path, "' has no valid ", f.sha256.empty() ? "blobId" : "lfs.sha256", " to verify it by");
      repo.files.push_back(std::move(f));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": unexpected answer from the Hub (", e.what(), ")");
  }
  return repo;
}

std::string HubClient::resolve_url(const HubRepo& r, const std::string& path) const {
  return endpoint_ + "/" + r.id + "/resolve/" + r.commit + "/" + url_encode(path, true);
}

}  // namespace whale
