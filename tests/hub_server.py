"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only).

It speaks the subset of the Hub protocol that `huggingface_hub` 2.x uses for `create_repo`, `create_branch`,
`create_commit` / `upload_folder` (preupload, LFS batch + PUT, NDJSON commit), `model_info`, `list_repo_tree`,
`get_paths_info`, `hf_hub_download` / `snapshot_download` / `from_pretrained` (HEAD/GET `resolve` with the
`X-Repo-Commit`, `ETag`, `X-Linked-Etag`, `X-Linked-Size` headers and `Range`). Blobs live in a temporary folder,
repositories (branches → commits → {path: entry}) in memory. Xet is not offered: clients need `HF_HUB_DISABLE_XET=1`.

`HubServer.stats` counts what clients sent (LFS PUTs per sha256, regular file bodies per path, commits, requests)
so tests can assert that nothing was uploaded twice; `fail_next_commits` makes the next commits fail with a 500
to simulate an interrupted push; `flaky(fraction, seed, max_failures)` fails that fraction of all requests (seeded)
with 500/502/503 or a connection dropped before the answer, at most `max_failures` times (`stats.injected`).

    python tests/hub_server.py --port 8765     # then HF_ENDPOINT=http://127.0.0.1:8765 HF_HUB_DISABLE_XET=1 ...
"""

import base64
import collections
import hashlib
import json
import random
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".npy", ".npz", ".png", ".jpg", ".zip")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class Stats:
    """What clients sent, for assertions. Keys: sha256 for LFS bodies, (repo_id, path) for regular files."""

    def __init__(self):
        self.lfs_uploads = collections.Counter()
        self.regular_uploads = collections.Counter()
        self.commits = collections.Counter()  # repo_id → number of commits made by clients
        self.requests: list[tuple[str, str]] = []
        self.injected: list[tuple[str, str, str]] = []  # (failure, method, path) of `HubServer.flaky`

    def lfs_uploads_of(self, content: bytes) -> int:
        return self.lfs_uploads[hashlib.sha256(content).hexdigest()]


class Repo:
    def __init__(self, repo_id: str, repo_type: str, private: bool):
        self.repo_id, self.repo_type, self.private = repo_id, repo_type, private
        self.commits: dict[str, dict[str, dict]] = {}  # commit sha → {path: entry}
        self.branches: dict[str, str] = {}

    def resolve(self, revision: str) -> tuple[str, dict[str, dict]]:
        sha = self.branches.get(revision, revision)
        if sha not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha, self.commits[sha]


def client_env(server: "HubServer", hf_home) -> dict:
    """A fresh process's environment for the loopback Hub (HF_ENDPOINT is read when huggingface_hub is imported)."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=server.url,
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN="dummy",
        HF_HOME=str(hf_home),
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


class HubServer:
    """`with HubServer() as hub:` serves on 127.0.0.1 at `hub.url` from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._tmp = tempfile.TemporaryDirectory(prefix="hub-server-")
        self.blobs = Path(self._tmp.name)  # content-addressed: one file per sha256
        self.repos: dict[tuple[str, str], Repo] = {}
        self.stats = Stats()
        self.fail_next_commits = 0
        self._flaky = None  # (random.Random, fraction, failures left)
        self.lock = threading.RLock()
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._tmp.cleanup()

    def flaky(self, fraction: float, seed: int = 0, max_failures: int | None = None):
        """Fail `fraction` of the following requests (drawn from a seeded generator): 500, 502, 503, or the
        connection closed after the request was read, without an answer. At most `max_failures` (None: no bound);
        `flaky(0)` ends it. Each failure is recorded in `stats.injected` as (kind, method, path)."""
        self._flaky = (random.Random(seed), fraction, max_failures) if fraction > 0 else None

    def _injected_failure(self) -> str | None:
        with self.lock:
            if self._flaky is None:
                return None
            rng, fraction, left = self._flaky
            if (left is not None and left <= 0) or rng.random() >= fraction:
                return None
            self._flaky = (rng, fraction, None if left is None else left - 1)
            return rng.choice(("500", "502", "503", "drop"))

    # --- inspection, for tests -----------------------------------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        return sorted(self.repos[(repo_type, repo_id)].resolve(revision)[1])

    def entry(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> dict:
        return self.repos[(repo_type, repo_id)].resolve(revision)[1][path]

    def read(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        return self.blob_path(self.entry(repo_id, path, revision, repo_type)["sha256"]).read_bytes()

    @staticmethod
    def sha256(path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    # --- storage -------------------------------------------------------------------------------------------------
    def put_blob(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        (self.blobs / sha256).write_bytes(content)
        return sha256

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def repo(self, repo_type: str, repo_id: str, token: str | None = None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not token):
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def commit(self, repo: Repo, revision: str, operations: list[dict], message: str) -> str:
        with self.lock:
            parent, files = repo.resolve(revision) if repo.commits else (None, {})
            if revision not in repo.branches and repo.commits:
                raise HubError(400, f"Can only commit to a branch, got {revision}")
            files = dict(files)
            for key, value in operations:
                path = value["path"]
                if key == "file":
                    content = base64.b64decode(value["content"])
                    files[path] = {
                        "size": len(content),
                        "oid": git_blob_sha1(content),
                        "sha256": self.put_blob(content),
                    }
                elif key == "lfsFile":
                    if not self.blob_path(value["oid"]).exists():
                        raise HubError(422, f"LFS object {value['oid']} for {path} was not uploaded")
                    size = self.blob_path(value["oid"]).stat().st_size
                    pointer = lfs_pointer(value["oid"], size)
                    lfs = {"oid": value["oid"], "size": size, "pointerSize": len(pointer)}
                    files[path] = {"size": size, "oid": git_blob_sha1(pointer), "sha256": value["oid"], "lfs": lfs}
                elif key in ("deletedFile", "deletedFolder"):
                    prefix = path.rstrip("/") + "/"
                    gone = [p for p in files if p == path or (key == "deletedFolder" and p.startswith(prefix))]
                    if not gone:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
                else:
                    raise HubError(400, f"Unsupported commit operation {key!r}")
            sha = hashlib.sha1(f"{parent}\n{message}\n{time.time_ns()}\n{sorted(files)}".encode()).hexdigest()
            repo.commits[sha] = files
            repo.branches[revision] = sha
            return sha


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample


def _listing(files: dict[str, dict], folder: str, recursive: bool) -> list[dict]:
    """Tree entries under `folder` ("" = root): files, plus the sub-folders (all of them when `recursive`)."""
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    entries, folders = [], set()
    for path, entry in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            if recursive or depth == 1:
                folders.add(prefix + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            entries.append(_file_entry(path, entry))
    entries += [{"type": "directory", "path": p, "oid": git_blob_sha1(p.encode()), "size": 0} for p in sorted(folders)]
    return entries


def _file_entry(path: str, entry: dict) -> dict:
    info = {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
    if "lfs" in entry:
        info["lfs"] = entry["lfs"]
    return info


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1.0"

    def log_message(self, *args):  # keep test output quiet
        pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # --- plumbing ------------------------------------------------------------------------------------------------
    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self._read_body()
        self.hub.stats.requests.append((method, url.path))
        segments = [unquote(s) for s in url.path.strip("/").split("/")]
        failure = self.hub._injected_failure()
        if failure:
            self.hub.stats.injected.append((failure, method, url.path))
            if failure == "drop":
                self.close_connection = True  # no answer: the client sees the server disconnect
                return
            return self._send_json({"error": "Injected failure"}, status=int(failure))
        try:
            for pattern, handler in self.ROUTES:
                if self._matches(method, pattern, segments):
                    return handler(self, segments)
            raise HubError(404, f"No route for {method} {url.path}")
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._send_json({"error": error.message, **error.extra}, status=error.status, headers=headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # CRLF after each chunk
        while self.rfile.readline().strip():  # trailers, up to the empty line
            pass
        return b"".join(chunks)

    @staticmethod
    def _matches(method: str, pattern: str, segments: list[str]) -> bool:
        route_method, route = pattern.split(" ", 1)
        if route_method != method and not (route_method == "GET" and method == "HEAD"):
            return False
        return re.fullmatch(route, "/".join(segments)) is not None

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _json(self) -> dict:
        return json.loads(self.body or b"{}")

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    def _require_token(self):
        if not self._token():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, segments: list[str]) -> Repo:
        """/api/{models|datasets|spaces}/{ns}/{name}/..."""
        return self.hub.repo(REPO_TYPES[segments[1]], f"{segments[2]}/{segments[3]}", self._token())

    # --- endpoints -----------------------------------------------------------------------------------------------
    def create_repo(self, segments):
        self._require_token()
        payload = self._json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if repo_type == "space" and payload.get("sdk") not in ("gradio", "docker", "static"):
            raise HubError(400, f"A Space needs an sdk (gradio, docker or static), got {payload.get('sdk')!r}")
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        url = f"{self.hub.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:  # the Hub's 409 still carries the url (create_repo reads it)
                raise HubError(409, f"You already created this {repo_type} repo", url=url)
            repo = self.hub.repos[(repo_type, repo_id)] = Repo(repo_id, repo_type, private)
            gitattributes = {"path": ".gitattributes", "content": base64.b64encode(GITATTRIBUTES)}
            self.hub.commit(repo, "main", [("file", gitattributes)], "initial commit")
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def agent_harnesses(self, segments):
        self._send_json({"standardEnvVars": [], "harnesses": {}})

    def validate_yaml(self, segments):
        self._send_json({"errors": [], "warnings": []})

    def preupload(self, segments):
        self._require_token()
        repo = self._repo(segments)
        _, files = repo.resolve(segments[5])
        answer = []
        for item in self._json()["files"]:
            sample = base64.b64decode(item.get("sample", ""))
            mode = "lfs" if _is_lfs(item["path"], item["size"], sample) else "regular"
            existing = files.get(item["path"])
            oid = None if existing is None else (existing["sha256"] if "lfs" in existing else existing["oid"])
            answer.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send_json({"files": answer})

    def lfs_batch(self, segments):
        self._require_token()
        offset = 1 if len(segments) == 7 else 0  # /{datasets|spaces}/{ns}/{name}.git/... or /{ns}/{name}.git/...
        repo_type = REPO_TYPES[segments[0]] if offset else "model"
        self.hub.repo(repo_type, f"{segments[offset]}/{segments[offset + 1].removesuffix('.git')}", self._token())
        objects = []
        for obj in self._json()["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"]}
            if not self.hub.blob_path(obj["oid"]).exists():
                href = f"{self.hub.url}/lfs-upload/{obj['oid']}"
                answer.update(authenticated=True, actions={"upload": {"href": href, "header": {}}})
            objects.append(answer)
        self._send_json(
            {"transfer": "basic", "objects": objects}, headers={"Content-Type": "application/vnd.git-lfs+json"}
        )

    def lfs_upload(self, segments):
        oid = segments[1]
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        self.hub.put_blob(self.body)
        with self.hub.lock:
            self.hub.stats.lfs_uploads[oid] += 1
        self._send(200)

    def commit(self, segments):
        self._require_token()
        repo = self._repo(segments)
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        operations = [(line["key"], line["value"]) for line in lines if line["key"] != "header"]
        if "create_pr" in self.query:
            raise HubError(400, "Pull requests are not supported by this test server")
        with self.hub.lock:
            if self.hub.fail_next_commits > 0:
                self.hub.fail_next_commits -= 1
                raise HubError(500, "Injected failure: commit interrupted")
            head, _ = repo.resolve(segments[5])
            if header.get("parentCommit") not in (None, head):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            sha = self.hub.commit(repo, segments[5], operations, header["summary"])
            self.hub.stats.commits[repo.repo_id] += 1
            for key, value in operations:
                if key == "file":
                    self.hub.stats.regular_uploads[(repo.repo_id, value["path"])] += 1
        self._send_json(
            {"commitOid": sha, "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{sha}", "pullRequestUrl": None}
        )

    def create_branch(self, segments):
        self._require_token()
        repo = self._repo(segments)
        branch = segments[5]
        with self.hub.lock:
            if branch in repo.branches:
                raise HubError(409, f"Branch {branch} already exists")
            start, _ = repo.resolve(self._json().get("startingPoint") or "main")
            repo.branches[branch] = start
        self._send_json({})

    def refs(self, segments):
        repo = self._repo(segments)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha} for name, sha in repo.branches.items()
        ]
        self._send_json({"branches": branches, "converts": [], "tags": []})

    def repo_info(self, segments):
        repo = self._repo(segments)
        sha, files = repo.resolve(segments[5] if len(segments) > 5 else "main")
        siblings = [{"rfilename": path, "size": entry["size"]} for path, entry in sorted(files.items())]
        for sibling, entry in zip(siblings, (files[s["rfilename"]] for s in siblings)):
            if "lfs" in entry:
                sibling["lfs"] = {
                    "sha256": entry["sha256"],
                    "size": entry["size"],
                    "pointerSize": entry["lfs"]["pointerSize"],
                }
        self._send_json(
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": sha,
                "private": repo.private,
                "siblings": siblings,
                "tags": [],
                "downloads": 0,
                "likes": 0,
            }
        )

    def tree(self, segments):
        _, files = self._repo(segments).resolve(segments[5])
        folder = "/".join(segments[6:])
        if folder and folder not in files and not any(p.startswith(folder.rstrip("/") + "/") for p in files):
            raise HubError(404, f"{folder} does not exist", "EntryNotFound")
        recursive = self.query.get("recursive", ["False"])[0].lower() == "true"
        self._send_json(_listing(files, folder, recursive))

    def paths_info(self, segments):
        _, files = self._repo(segments).resolve(segments[5])
        form = parse_qs(self.body.decode())
        answer = []
        for path in form.get("paths", []):
            if path in files:
                answer.append(_file_entry(path, files[path]))
            elif any(p.startswith(path.rstrip("/") + "/") for p in files):
                answer.append({"type": "directory", "path": path, "oid": git_blob_sha1(path.encode()), "size": 0})
        self._send_json(answer)

    def resolve(self, segments):
        offset = 1 if segments[0] in ("datasets", "spaces") else 0
        repo_type = REPO_TYPES[segments[0]] if offset else "model"
        repo = self.hub.repo(repo_type, "/".join(segments[offset : offset + 2]), self._token())
        sha, files = repo.resolve(segments[offset + 3])
        path = "/".join(segments[offset + 4 :])
        entry = files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        content = self.hub.blob_path(entry["sha256"]).read_bytes()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes"}
        if "lfs" in entry:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": entry["size"]})
        status, match = 200, re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and match.group(1):
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        self._send(status, content, headers, content_type="application/octet-stream")

    _REPO = r"(models|datasets|spaces)/[^/]+/[^/]+"
    ROUTES = [
        ("POST api/repos/create", create_repo),
        ("POST api/validate-yaml", validate_yaml),
        ("GET api/agent-harnesses", agent_harnesses),
        (rf"POST api/{_REPO}/preupload/[^/]+", preupload),
        (rf"POST api/{_REPO}/commit/[^/]+", commit),
        (rf"POST api/{_REPO}/branch/[^/]+", create_branch),
        (rf"POST api/{_REPO}/paths-info/[^/]+", paths_info),
        (rf"GET api/{_REPO}/refs", refs),
        (rf"GET api/{_REPO}(/revision/[^/]+)?", repo_info),
        (rf"GET api/{_REPO}/tree/[^/]+(/.*)?", tree),
        (r"POST ((datasets|spaces)/)?[^/]+/[^/]+\.git/info/lfs/objects/batch", lfs_batch),
        (r"PUT lfs-upload/[0-9a-f]{64}", lfs_upload),
        (r"GET ((datasets|spaces)/)?[^/]+/[^/]+/resolve/[^/]+/.+", resolve),
    ]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with HubServer(port=args.port) as hub:
        print(f"Serving a loopback Hub at {hub.url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
