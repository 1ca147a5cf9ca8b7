// HTTP(S) GETs for downloading models (libcurl): whole small bodies (the Hub's JSON API) and
// byte ranges of large files, following redirects. Proxies come from the usual environment
// variables (https_proxy, no_proxy), which libcurl reads itself.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/error.h"

namespace whale {

// A request that got an HTTP status other than success; `status` is 0 for transport errors
// (refused connection, DNS, timeout, a body cut short).
class HttpError : public Error {
 public:
  HttpError(long status, const std::string& what, std::string code = "") : Error(what), status(status), code(std::move(code)) {}
  long status;
  std::string code;  // the Hub's X-Error-Code header (RepositoryNotFound, GatedRepo, ...)
  bool transient() const { return status == 0 || status == 408 || status == 429 || status >= 500; }
};

struct HttpOptions {
  std::string bearer_token;       // sent as Authorization (never to another host on redirect)
  long connect_timeout_s = 30;
  long stall_timeout_s = 60;      // fail a transfer that moves < 1 byte/s for this long
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names, the last response's
};

// GETs `url` whole (bodies over max_body bytes are an error). Any status >= 400 throws HttpError.
HttpResponse http_get(const std::string& url, const HttpOptions& o, size_t max_body = 64 << 20);

// GETs bytes [begin, end) of `url` into sink(data, n), which returns false to abort (then the
// call returns quietly). Throws HttpError for statuses >= 400, for a server that ignores the
// range, and for a body that ends before `end` (status 0, transient).
void http_get_range(const std::string& url, uint64_t begin, uint64_t end, const HttpOptions& o,
                    const std::function<bool(const char*, size_t)>& sink);

// Percent-encodes a path segment (keeps unreserved characters and, with keep_slash, '/').
std::string url_encode(std::string_view s, bool keep_slash = false);

}  // namespace whale
