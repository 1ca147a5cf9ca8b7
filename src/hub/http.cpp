#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

namespace whale {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// The state of one transfer, seen by the callbacks.
struct Transfer {
  CURL* curl = nullptr;
  std::function<bool(const char*, size_t)> sink;  // the body of a success response
  std::string error_body;                          // the start of an error response's body
  std::map<std::string, std::string> headers;
  uint64_t received = 0, limit = UINT64_MAX;
  bool range_expected = false, range_ignored = false, too_big = false, aborted = false;
  bool whole_ok = false;  // a 200 with the whole file answers a range from 0: keep its start
  bool ended_early = false;

  long status() const {
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) t->headers.clear();  // a new response (after a redirect)
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
    t->headers[name] = std::string(value);
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  const long status = t->status();
  if (status >= 400) {
    if (t->error_body.size() < 4096) t->error_body.append(data, std::min<size_t>(bytes, 4096 - t->error_body.size()));
    return bytes;
  }
  if (t->range_expected && status == 200) {
    t->range_ignored = true;
    return 0;
  }
  if (t->received + bytes > t->limit) {
    if (!(t->whole_ok && status == 200)) {
      t->too_big = true;
      return 0;
    }
    const size_t keep = size_t(t->limit - t->received);
    t->received = t->limit;
    if (!t->sink(data, keep)) t->aborted = true;
    t->ended_early = true;
    return 0;
  }
  t->received += bytes;
  if (!t->sink(data, bytes)) {
    t->aborted = true;
    return 0;
  }
  return bytes;
}

// The message of an error response: the Hub answers {"error": "..."} or text.
std::string error_message(const std::string& body) {
  std::string s = body.substr(0, 300);
  const size_t at = s.find("\"error\"");
  if (at != std::string::npos) {
    const size_t q1 = s.find('"', s.find(':', at) + 1);
    const size_t q2 = q1 == std::string::npos ? q1 : s.find('"', q1 + 1);
    if (q2 != std::string::npos) return s.substr(q1 + 1, q2 - q1 - 1);
  }
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == '\n' || c == '\r'; }), s.end());
  return s;
}

// One handle per thread, reset between transfers: libcurl keeps its connections (and TLS
// sessions) open, so the chunks of a pull do not each pay a new handshake.
CURL* thread_handle() {
  thread_local std::unique_ptr<CURL, CurlDeleter> handle;
  if (!handle) handle.reset(curl_easy_init());
  else curl_easy_reset(handle.get());
  return handle.get();
}

void perform(Transfer& t, const std::string& url, const HttpOptions& o, const std::string& range) {
  global_init();
  CURL* c = thread_handle();
  if (!c) throw HttpError(0, "cannot start an HTTP transfer (libcurl)");
  t.curl = c;
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  if (!o.bearer_token.empty())
    headers.reset(curl_slist_append(nullptr, ("Authorization: Bearer " + o.bearer_token).c_str()));
  char curl_error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);  // no token to a CDN host we are sent to
  curl_easy_setopt(c, CURLOPT_USERAGENT, "whale/0.1.0");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o.stall_timeout_s);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_error);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (!range.empty()) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  const CURLcode rc = curl_easy_perform(c);
  const long status = t.status();
  if (status >= 400) {
    std::string msg = error_message(t.error_body);
    const auto code = t.headers.find("x-error-code");
    throw HttpError(status, "HTTP " + std::to_string(status) + (msg.empty() ? "" : " (" + msg + ")") + " from " + url,
                    code == t.headers.end() ? "" : code->second);
  }
  if (t.aborted || t.ended_early) return;
  if (t.range_ignored) throw HttpError(0, "the server ignored the byte range requested from " + url);
  if (t.too_big) throw HttpError(0, "the response from " + url + " is larger than expected");
  if (rc != CURLE_OK)
    throw HttpError(0, std::string(curl_error[0] ? curl_error : curl_easy_strerror(rc)) + " (" + url + ")");
}

}  // namespace

HttpResponse http_get(const std::string& url, const HttpOptions& o, size_t max_body) {
  HttpResponse r;
  Transfer t;
  t.limit = max_body;
  t.sink = [&](const char* d, size_t n) {
    r.body.append(d, n);
    return true;
  };
  perform(t, url, o, "");
  r.status = t.status();
  r.headers = std::move(t.headers);
  return r;
}

void http_get_range(const std::string& url, uint64_t begin, uint64_t end, const HttpOptions& o,
                    const std::function<bool(const char*, size_t)>& sink) {
  if (begin >= end) return;
  Transfer t;
  t.limit = end - begin;
  t.range_expected = begin > 0;  // a 200 is the whole file: fine only from the start
  t.whole_ok = begin == 0;
  t.sink = sink;
  perform(t, url, o, std::to_string(begin) + "-" + std::to_string(end - 1));
  if (!t.aborted && t.received != end - begin)
    throw HttpError(0, "the connection ended after " + std::to_string(t.received) + " of " + std::to_string(end - begin) +
                           " bytes (" + url + ")");
}

std::string url_encode(std::string_view s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += char(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace whale
