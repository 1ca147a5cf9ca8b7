// The Hugging Face Hub's public HTTP API: a repository's files at a revision (with their sizes
// and the SHA-256 of LFS files) and the `resolve` URLs that serve them. $HF_ENDPOINT replaces
// https://huggingface.co (mirrors, tests); $HF_TOKEN (or the token `huggingface-cli login`
// saved) authenticates gated and private repositories.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hub/http.h"

namespace whale {

struct HubFile {
  std::string path;     // within the repository ("model-00001-of-00163.safetensors")
  uint64_t size = 0;
  std::string sha256;   // LFS files: hex SHA-256 of the content
  std::string git_sha1; // other files: the git blob id (SHA-1 of "blob SIZE\0" + content)
};

struct HubRepo {
  std::string id;        // owner/name
  std::string revision;  // as asked ("main")
  std::string commit;    // the commit it resolved to: every file is fetched from this one
  std::vector<HubFile> files;
};

class HubClient {
 public:
  HubClient();  // endpoint and token from the environment
  HubClient(std::string endpoint, std::string token);

  // Throws Error with a clear message: no such repository or revision, gated/private without
  // an accepted token, unreachable endpoint.
  HubRepo repo(const std::string& id, const std::string& revision = "main") const;
  std::string resolve_url(const HubRepo& r, const std::string& path) const;
  const HttpOptions& http() const { return http_; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::string endpoint_;
  HttpOptions http_;
};

// Parses the Hub's answer to GET /api/models/ID/revision/REV?blobs=true (`source` names it in
// errors): the commit and every file with its size and hash; unsafe file names are refused.
HubRepo parse_repo_listing(const std::string& body, const std::string& id, const std::string& revision,
                           const std::string& source);

// Whether `id` has the shape of a repository id: owner/name of [A-Za-z0-9._-].
bool is_repo_id(const std::string& id);

}  // namespace whale
