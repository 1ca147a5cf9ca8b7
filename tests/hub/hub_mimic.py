"""A stand-in for the Hugging Face Hub's HTTP endpoints, for testing `whale pull` offline.

Serves what `whale pull` uses, as huggingface.co does:
  GET /api/models/OWNER/NAME/revision/REV?blobs=true  the listing: commit ("sha") and siblings
      with size, blobId (git SHA-1) and, for LFS files, lfs.sha256
  GET /OWNER/NAME/resolve/REV/PATH  git files served directly; LFS files answered with a 302
      to a CDN URL on another host name (localhost instead of 127.0.0.1), as the Hub does
  GET /cdn/SHA256                   the LFS content, with HTTP Range support (206)
Errors carry the Hub's X-Error-Code header (RepositoryNotFound, GatedRepo, RevisionNotFound).

Faults for tests: `drop_once[path] = n` cuts the next response for PATH after n bytes;
`throttle` (bytes/s) slows every content response; `lie_sha` / `lie_size` per path list a
wrong checksum or size. Every request is recorded in `log` as (kind, path, range start,
had Authorization).
"""
import hashlib
import http.server
import json
import threading
import time
import urllib.parse


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id, files, gated=False, lfs_ext=(".safetensors", ".gguf", ".bin")):
        """gated: False, True (listed to anyone, files need an accepted token) or "private"
        (invisible without the token, as the Hub answers for private repositories)."""
        self.id = repo_id
        self.files = dict(files)  # path -> bytes
        self.gated = gated
        self.lfs = {p for p in self.files if p.endswith(lfs_ext)}
        self.commit = hashlib.sha1(repr(sorted((p, hashlib.sha256(d).hexdigest()) for p, d in self.files.items())).encode()).hexdigest()
        self.lie_sha = {}
        self.lie_size = {}
        self._sha = {}

    def sha256(self, path, git=False):
        """The content's SHA-256 (or git blob id), computed once per content: hashing a large
        file per request would make the mimic the bottleneck of a benchmark."""
        data = self.files[path]
        key = (path, id(data), len(data), git)
        if key not in self._sha:
            self._sha[key] = git_sha1(data) if git else hashlib.sha256(data).hexdigest()
        return self._sha[key]

    def sibling(self, path):
        data = self.files[path]
        s = {"rfilename": path, "size": self.lie_size.get(path, len(data)), "blobId": self.sha256(path, git=True)}
        if path in self.lfs:
            s["lfs"] = {"sha256": self.lie_sha.get(path, self.sha256(path)),
                        "size": self.lie_size.get(path, len(data)), "pointerSize": 134}
        elif path in self.lie_sha:
            s["blobId"] = self.lie_sha[path]
        return s


class Mimic:
    def __init__(self, token="hf_secret"):
        self.repos = {}
        self.token = token
        self.log = []
        self.drop_once = {}
        self.throttle = 0
        self.lock = threading.Lock()
        mimic = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                try:
                    mimic.handle(self)
                except (BrokenPipeError, ConnectionResetError):  # the client went away (kill -9 tests)
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients killed mid-request (kill -9 tests)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo):
        self.repos[repo.id] = repo
        return repo

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self, kind=None):
        with self.lock:
            return [e for e in self.log if kind is None or e[0] == kind]

    # --- the endpoints ---
    def error(self, h, status, code, message):
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        if code:
            h.send_header("X-Error-Code", code)
        h.end_headers()
        h.wfile.write(body)

    def authorized(self, h, repo):
        return not repo.gated or h.headers.get("Authorization") == "Bearer " + self.token

    def handle(self, h):
        url = urllib.parse.urlsplit(h.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        auth = h.headers.get("Authorization") is not None
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
            repo_id = parts[2] + "/" + parts[3]
            with self.lock:
                self.log.append(("api", repo_id, None, auth))
            repo = self.repos.get(repo_id)
            if repo is None:
                return self.error(h, 401, "RepositoryNotFound", "Repository not found")
            if repo.gated == "private" and not self.authorized(h, repo):  # private: as if it did not exist
                return self.error(h, 401, "RepositoryNotFound", "Repository not found")
            # A gated repository is listed to anyone; its files need an accepted token.
            if parts[5] not in ("main", repo.commit):
                return self.error(h, 404, "RevisionNotFound", "Invalid rev id: " + parts[5])
            body = json.dumps({"id": repo_id, "sha": repo.commit, "private": repo.gated == "private",
                               "gated": "manual" if repo.gated is True else False,
                               "siblings": [repo.sibling(p) for p in sorted(repo.files)]}).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = parts[0] + "/" + parts[1]
            path = "/".join(parts[4:])
            repo = self.repos.get(repo_id)
            if repo is None or path not in repo.files:
                return self.error(h, 404, "EntryNotFound" if repo else "RepositoryNotFound", "not found")
            if not self.authorized(h, repo):
                if repo.gated == "private":
                    return self.error(h, 401, "RepositoryNotFound", "Repository not found")
                has_token = h.headers.get("Authorization") is not None
                return self.error(h, 403 if has_token else 401, "GatedRepo",
                                  "Access to model %s is restricted and you are not in the authorized list." % repo_id)
            if parts[3] != repo.commit:
                return self.error(h, 404, "RevisionNotFound", "Invalid rev id")
            if path in repo.lfs:
                with self.lock:
                    self.log.append(("resolve", path, None, auth))
                sha = repo.sha256(path)
                loc = "http://localhost:%d/cdn/%s?repo=%s&path=%s" % (self.port, sha, urllib.parse.quote(repo_id, safe=""),
                                                                      urllib.parse.quote(path, safe=""))
                h.send_response(302)
                h.send_header("Location", loc)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            return self.serve(h, repo.files[path], path, auth)
        if parts[0] == "cdn" and len(parts) == 2:
            q = urllib.parse.parse_qs(url.query)
            repo = self.repos.get(q.get("repo", [""])[0])
            path = q.get("path", [""])[0]
            if repo is None or path not in repo.files:
                return self.error(h, 404, None, "no such blob")
            return self.serve(h, repo.files[path], path, auth)
        return self.error(h, 404, None, "no endpoint " + h.path)

    def serve(self, h, data, path, auth):
        start, end = 0, len(data)
        rng = h.headers.get("Range")
        if rng:
            a, b = rng.replace("bytes=", "").split("-")
            start, end = int(a), min(int(b) + 1 if b else len(data), len(data))
        with self.lock:
            self.log.append(("content", path, start, auth))
            drop = self.drop_once.pop(path, None)
        h.send_response(206 if rng else 200)
        h.send_header("Content-Length", str(end - start))
        if rng:
            h.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        h.end_headers()
        body = memoryview(data)[start:end]
        if drop is not None:  # a connection cut mid-file
            h.wfile.write(body[:drop])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        step = 16384 if self.throttle else 1 << 20
        for i in range(0, len(body), step):
            try:
                h.wfile.write(body[i:i + step])
            except (BrokenPipeError, ConnectionResetError):
                return
            if self.throttle:
                time.sleep(step / self.throttle)
