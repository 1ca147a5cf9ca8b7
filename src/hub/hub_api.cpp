#include "hub/hub_api.h"

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
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(url, ": the Hub's answer is not a JSON object");
  HubRepo repo;
  repo.id = id;
  repo.revision = revision;
  try {
    repo.commit = j.value("sha", std::string());
    if (repo.commit.empty()) fail(url, ": the Hub's answer names no commit (\"sha\")");
    for (const auto& s : j.at("siblings")) {
      HubFile f;
      f.path = s.at("rfilename").get<std::string>();
      if (s.contains("lfs") && s["lfs"].is_object()) {
        f.sha256 = s["lfs"].at("sha256").get<std::string>();
        f.size = s["lfs"].at("size").get<uint64_t>();
      } else {
        f.git_sha1 = s.value("blobId", std::string());
        f.size = s.at("size").get<uint64_t>();
      }
      // Paths come from the network: no absolute paths, no climbing out of the model's folder.
      if (f.path.empty() || f.path[0] == '/' || f.path.find("..") != std::string::npos || f.path.find('\\') != std::string::npos)
        fail(url, ": refusing the file name '", f.path, "'");
      repo.files.push_back(std::move(f));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(url, ": unexpected answer from the Hub (", e.what(), ")");
  }
  return repo;
}

std::string HubClient::resolve_url(const HubRepo& r, const std::string& path) const {
  return endpoint_ + "/" + r.id + "/resolve/" + r.commit + "/" + url_encode(path, true);
}

}  // namespace whale
