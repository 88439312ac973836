"""A local stand-in for the part of the GitHub REST API that promptbot uses.

Tests point the real PyGithub client at it (``base_url=standin.base_url``), so the real client
code, (de)serialization, pagination and retries run against it.  It is kept honest by the
OpenAPI description in ``tests/reference/github-openapi-subset.json``: every JSON request body it
receives and every JSON response body it sends is validated against the operation's schema, and
every violation is appended to ``GitHubStandIn.validation_errors`` (tests assert that list is
empty at teardown).  A request for an operation outside the subset is answered 404 and recorded
there as well, so the bot cannot silently start depending on an endpoint nobody modelled.

State helpers (``merge``, ``close``, ``add_comment``, ...) let a test act as the human on GitHub.
When ``bare_repo`` is given, branches and SHAs come from that real git repository and ``merge``
writes a real ``--no-ff`` merge commit into it, like the merge button.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import itertools
import json
import math
import re
import socket
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import git
from jsonschema import FormatChecker, _keywords
from jsonschema.validators import extend
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30WriteValidator,
    oas30_format_checker,
)
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC_PATH = Path(__file__).resolve().parent.parent / "reference" / "github-openapi-subset.json"
API_PREFIX = "/api/v3"
DOCS_URL = "https://docs.github.com/rest"
_SPEC_URI = "urn:promptbot:github-openapi-subset"

# Operations PyGithub needs that are not among the subset's 18, with the component schema their
# success response is checked against (GitHub documents GET issue as returning `issue`).
# PyGithub's `PullRequest.as_issue()` returns a lazy Issue that GETs this URL on attribute access.
EXTRA_OPERATIONS: dict[tuple[str, str], dict[int, str]] = {
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"): {200: "/components/schemas/issue"},
}


# --------------------------------------------------------------------------------------------
# OpenAPI validation
# --------------------------------------------------------------------------------------------


def _pointer_escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _check_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc) and not any(c.isspace() for c in value)


def _nullable_enum(validator: Any, enums: Any, instance: Any, schema: dict[str, Any]) -> Any:
    """``enum`` that lets ``null`` through when the schema says ``nullable: true``.

    GitHub's description has nullable enums without ``null`` among the values (issue
    ``state_reason``, check-run ``conclusion``), and GitHub does send ``null`` for them. Under the
    OAS 3.0.3 clarification (which openapi-schema-validator follows) ``nullable`` does not extend
    ``enum``, so those real responses would be rejected; this keeps GitHub's intent instead.
    """
    if instance is None and schema.get("nullable") is True:
        return
    yield from _keywords.enum(validator, enums, instance, schema)


_ResponseValidator = extend(OAS30ReadValidator, {"enum": _nullable_enum})
_RequestValidator = extend(OAS30WriteValidator, {"enum": _nullable_enum})


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checkers = dict(oas30_format_checker.checkers)
    checker.checks("uri")(_check_uri)
    return checker


class OpenAPISubset:
    """Validates request/response bodies against the operations of the OpenAPI subset.

    ``$ref``s (``#/components/...``) are resolved with a ``referencing`` registry holding the
    whole document; each schema is validated through a ``{"$ref": "<doc>#<json-pointer>"}``.
    Responses use ``OAS30ReadValidator``, requests ``OAS30WriteValidator`` (both handle
    ``nullable``; see ``_nullable_enum`` for the one relaxation), with format checking on
    (date-time, int64, uri, ...).
    """

    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        resource = DRAFT4.create_resource(self.document)
        self._registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
        self._format_checker = _format_checker()
        self._validators: dict[tuple[str, bool], Any] = {}
        self._lock = threading.Lock()

    # -- lookups -------------------------------------------------------------------------------
    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        op = self.document["paths"].get(template, {}).get(method.lower())
        return op if isinstance(op, dict) else None

    def _deref(self, obj: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        """Follows a local ``$ref`` (response/parameter/requestBody objects)."""
        while "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), ref
            pointer = ref[1:]
            node: Any = self.document
            for token in ref[2:].split("/"):
                node = node[token.replace("~1", "/").replace("~0", "~")]
            obj = node
        return obj, pointer

    def _op_pointer(self, method: str, template: str) -> str:
        return f"/paths/{_pointer_escape(template)}/{method.lower()}"

    # -- validation ----------------------------------------------------------------------------
    def schema_errors(self, pointer: str, instance: Any, *, read: bool = True) -> list[str]:
        """Validates ``instance`` against the schema at JSON pointer ``pointer`` in the document
        (e.g. ``/components/schemas/pull-request``). Returns human-readable error strings."""
        key = (pointer, read)
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                cls = _ResponseValidator if read else _RequestValidator
                validator = cls(
                    {"$ref": f"{_SPEC_URI}#{pointer}"},
                    registry=self._registry,
                    format_checker=self._format_checker,
                )
                self._validators[key] = validator
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        out = []
        for err in errors[:10]:
            where = "/".join(str(p) for p in err.absolute_path) or "<root>"
            message = err.message if len(err.message) <= 300 else err.message[:300] + "..."
            out.append(f"{where}: {message}")
        return out

    def component_errors(self, name: str, instance: Any) -> list[str]:
        """Validates against ``#/components/schemas/<name>`` (response direction)."""
        return self.schema_errors(f"/components/schemas/{name}", instance)

    def request_errors(self, method: str, template: str, body: Any) -> list[str]:
        op = self.operation(method, template)
        if op is None:
            return [] if body is None else ["operation is not in the subset; body not checked"]
        request_body = op.get("requestBody")
        if request_body is None:
            return [] if body is None else ["operation takes no request body"]
        rb, rb_pointer = self._deref(
            request_body, self._op_pointer(method, template) + "/requestBody"
        )
        if body is None:
            return ["request body is required"] if rb.get("required") else []
        if "application/json" not in rb.get("content", {}):
            return ["operation takes no JSON request body"]
        pointer = f"{rb_pointer}/content/application~1json/schema"
        return self.schema_errors(pointer, body, read=False)

    def query_errors(self, method: str, template: str, query: dict[str, str]) -> list[str]:
        """Checks the query parameters the operation declares (unknown ones are ignored, as
        GitHub does). Values are coerced from strings by the parameter's schema type."""
        op = self.operation(method, template)
        if op is None:
            return []
        out: list[str] = []
        base = self._op_pointer(method, template) + "/parameters"
        for index, raw in enumerate(op.get("parameters", [])):
            param, pointer = self._deref(raw, f"{base}/{index}")
            name = param.get("name")
            if param.get("in") != "query" or name not in query:
                continue
            schema, _ = self._deref(param.get("schema", {}), pointer + "/schema")
            value: Any = query[name]
            if schema.get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    out.append(f"query {name}={value!r}: not an integer")
                    continue
            elif schema.get("type") == "boolean":
                value = {"true": True, "false": False}.get(value, value)
            for err in self.schema_errors(pointer + "/schema", value, read=False):
                out.append(f"query {name}={query[name]!r}: {err}")
        return out

    def response_errors(self, method: str, template: str, status: int, body: Any) -> list[str]:
        pointer = self.response_schema_pointer(method, template, status)
        if pointer is None:
            if body is None:
                return []
            if status >= 400:
                pointer = "/components/schemas/" + (
                    "validation-error" if status == 422 else "basic-error"
                )
            else:
                return [f"status {status} is not described with a JSON body for this operation"]
        if body is None:
            return [f"status {status} must carry a JSON body"]
        return self.schema_errors(pointer, body)

    def response_schema_pointer(self, method: str, template: str, status: int) -> str | None:
        extra = EXTRA_OPERATIONS.get((method, template))
        if extra is not None:
            return extra.get(status)
        op = self.operation(method, template)
        if op is None:
            return None
        responses = op.get("responses", {})
        raw = responses.get(str(status)) or responses.get("default")
        if raw is None:
            return None
        resp, pointer = self._deref(
            raw, self._op_pointer(method, template) + f"/responses/{status}"
        )
        if "application/json" not in resp.get("content", {}):
            return None
        return f"{pointer}/content/application~1json/schema"


@lru_cache(maxsize=1)
def load_spec() -> OpenAPISubset:
    """The parsed subset (shared by all stand-ins; validators are cached per schema)."""
    return OpenAPISubset()


# --------------------------------------------------------------------------------------------
# Recorded traffic and internal state
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str  # "GET", "POST", ...
    path: str  # without the /api/v3 prefix and without the query, e.g. "/repos/acme/prompts/pulls"
    query: dict[str, str]
    body: Any  # parsed JSON or None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _legacy_node_id(kind: str, ident: int) -> str:
    """GitHub's legacy global node id: base64("0<len>:<Type><id>"), e.g. MDQ6VXNlcjE= ."""
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


def _fake_sha(*parts: object) -> str:
    return hashlib.sha1(":".join(str(p) for p in parts).encode()).hexdigest()


class _HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        documentation_url: str = DOCS_URL,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": documentation_url}
        if errors is not None:
            self.body["errors"] = errors
        self.body["status"] = str(status)


def _not_found() -> _HTTPError:
    return _HTTPError(404, "Not Found")


def _validation_failed(errors: list[dict[str, Any]], doc: str = DOCS_URL) -> _HTTPError:
    return _HTTPError(422, "Validation Failed", errors=errors, documentation_url=doc)


@dataclass
class _Label:
    id: int
    name: str
    color: str
    description: str | None
    default: bool


@dataclass
class _Comment:
    id: int
    issue_number: int
    body: str
    user: str
    association: str
    created_at: str
    updated_at: str


@dataclass
class _Pull:
    id: int
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    draft: bool = False
    maintainer_can_modify: bool = False
    merged: bool = False
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None
    commits: int = 1
    additions: int = 0
    deletions: int = 0
    changed_files: int = 0
    mergeable: bool | None = None
    reviews: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Issue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    association: str
    created_at: str
    updated_at: str
    state: str = "open"
    state_reason: str | None = None
    closed_at: str | None = None
    closed_by: str | None = None
    labels: list[str] = field(default_factory=list)
    pull: _Pull | None = None


@dataclass
class _Call:
    method: str
    template: str
    raw_path: str  # path as requested, after the /api/v3 prefix (still percent-encoded)
    params: dict[str, str]
    query: dict[str, str]
    body: Any


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


_DEFAULT_LABELS: list[tuple[str, str, str]] = [
    ("bug", "d73a4a", "Something isn't working"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("duplicate", "cfd3d7", "This issue or pull request already exists"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
]

_KNOWN_USER_IDS = {"octocat": 583231, "github-actions[bot]": 41898282, "github": 9919}
_ORGANIZATIONS = {"github"}


class MergeConflictError(RuntimeError):
    pass


class _BareRepo:
    """Thin GitPython wrapper over the bare repository that plays GitHub's copy of the repo."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._git = git.Repo(self.path).git

    def resolve(self, rev: str) -> str | None:
        try:
            out: str = self._git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
        except git.GitCommandError:
            return None
        return out.strip() or None

    def branch_sha(self, branch: str) -> str | None:
        return self.resolve(f"refs/heads/{branch}")

    def ref_exists(self, ref: str) -> bool:
        try:
            self._git.show_ref("--verify", "--quiet", f"refs/{ref}")
        except git.GitCommandError:
            return False
        return True

    def delete_ref(self, ref: str) -> None:
        self._git.update_ref("-d", f"refs/{ref}")

    def stats(self, base: str, head: str) -> tuple[int, int, int, int]:
        """(commits, additions, deletions, changed_files) of head relative to base."""
        commits = int(self._git.rev_list("--count", f"{base}..{head}"))
        additions = deletions = files = 0
        for line in self._git.diff("--numstat", f"{base}...{head}").splitlines():
            added, deleted, _ = line.split("\t", 2)
            files += 1
            additions += int(added) if added.isdigit() else 0
            deletions += int(deleted) if deleted.isdigit() else 0
        return commits, additions, deletions, files

    def merge_tree(self, base: str, head: str) -> str | None:
        """Tree of merging head into base, or None on conflicts."""
        try:
            out: str = self._git.merge_tree("--write-tree", base, head)
        except git.GitCommandError:
            return None
        return out.splitlines()[0].strip()

    def merge_no_ff(self, base_branch: str, head_sha: str, message: str, author: str) -> str:
        base_sha = self.branch_sha(base_branch)
        if base_sha is None:
            raise MergeConflictError(f"base branch {base_branch!r} does not exist")
        tree = self.merge_tree(base_sha, head_sha)
        if tree is None:
            raise MergeConflictError(f"{head_sha} does not merge cleanly into {base_branch}")
        env = {
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": f"{author}@users.noreply.github.com",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }
        sha: str = self._git.commit_tree(
            tree, "-p", base_sha, "-p", head_sha, "-m", message, env=env
        )
        sha = sha.strip()
        self._git.update_ref(f"refs/heads/{base_branch}", sha, base_sha)
        return sha


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    standin: GitHubStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the fault sweep) is not the stand-in's error.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; avoid 40 ms stalls
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 30
    server: _Server

    def _serve(self) -> None:
        self.server.standin._serve(self)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: str


def _route(method: str, template: str, handler: str) -> _Route:
    regex = ""
    for piece in re.split(r"(\{[a-z_]+\})", template):
        if piece.startswith("{"):
            name = piece[1:-1]
            if name == "ref":
                body = ".+"
            elif name.endswith(("_number", "_id")):
                body = r"\d+"
            else:
                body = "[^/]+"
            regex += f"(?P<{name}>{body})"
        else:
            regex += re.escape(piece)
    return _Route(method, template, re.compile(regex + r"\Z"), handler)


_R = "/repos/{owner}/{repo}"
_ROUTES: list[_Route] = [
    _route("GET", _R, "_op_get_repo"),
    _route("GET", _R + "/pulls", "_op_list_pulls"),
    _route("POST", _R + "/pulls", "_op_create_pull"),
    _route("GET", _R + "/pulls/{pull_number}", "_op_get_pull"),
    _route("PATCH", _R + "/pulls/{pull_number}", "_op_update_pull"),
    _route("GET", _R + "/pulls/{pull_number}/reviews", "_op_list_reviews"),
    _route("GET", _R + "/issues/{issue_number}/comments", "_op_list_comments"),
    _route("POST", _R + "/issues/{issue_number}/comments", "_op_create_comment"),
    _route("PATCH", _R + "/issues/comments/{comment_id}", "_op_update_comment"),
    _route("POST", _R + "/issues/{issue_number}/labels", "_op_add_labels"),
    _route("POST", _R + "/issues", "_op_create_issue"),
    _route("GET", _R + "/issues", "_op_list_issues"),
    _route("GET", _R + "/issues/{issue_number}", "_op_get_issue"),
    _route("PATCH", _R + "/issues/{issue_number}", "_op_update_issue"),
    _route("POST", _R + "/statuses/{sha}", "_op_create_status"),
    _route("POST", _R + "/check-runs", "_op_create_check_run"),
    _route("GET", "/rate_limit", "_op_rate_limit"),
    _route("DELETE", _R + "/git/refs/{ref}", "_op_delete_ref"),
    _route("GET", _R + "/commits/{ref}/status", "_op_combined_status"),
    _route("GET", _R + "/collaborators/{username}/permission", "_op_permission"),
]

_ADD_LABELS = _R + "/issues/{issue_number}/labels"


# --------------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------------


class GitHubStandIn:
    """Local GitHub REST stand-in for one repository (``owner/repo``).

    Use as a context manager or call ``start()``/``stop()``. Point PyGithub at ``base_url``.
    """

    RATE_LIMIT = 5000

    def __init__(
        self,
        owner: str = "acme",
        repo: str = "prompts",
        *,
        bare_repo: Path | None = None,
        default_branch: str = "main",
        token: str = "test-token",
        actor: str = "github-actions[bot]",
    ) -> None:
        self.owner = owner
        self.repo = repo
        self.default_branch = default_branch
        self.token = token
        self.actor = actor  # the login the token authenticates as (authors the bot's writes)
        self.spec = load_spec()
        self._git = _BareRepo(bare_repo) if bare_repo is not None else None
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self.base_url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._log_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._issues: dict[int, _Issue] = {}
        self._comments: dict[int, _Comment] = {}
        self._statuses: dict[str, list[dict[str, Any]]] = {}
        self._check_runs: list[dict[str, Any]] = []
        self._labels: dict[str, _Label] = {}
        self._failures: list[tuple[str, str, _Reply]] = []
        self._after: list[tuple[str, str, str, float]] = []
        # Called after each write is carried out, before it is answered.
        self.write_hook: Callable[[str, str], None] | None = None
        self._permissions: dict[str, str] = {}
        # Branch tips when there is no bare repo to read them from.
        self._branches: dict[str, str] = {default_branch: _fake_sha(owner, repo, default_branch)}
        self._rate_used = 0
        self._rate_reset = int(time.time()) + 3600
        self._repo_id = 700_000_000 + zlib.crc32(f"{owner}/{repo}".encode()) % 100_000_000
        self._created_at = "2024-01-15T09:30:00Z"
        for name, color, description in _DEFAULT_LABELS:
            self._new_label(name, color=color, description=description, default=True)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> GitHubStandIn:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        self._server = server
        port = server.server_address[1]
        self._web = f"http://127.0.0.1:{port}"
        self.base_url = f"{self._web}{API_PREFIX}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- traffic log ---------------------------------------------------------------------------
    def writes(self) -> list[RecordedRequest]:
        with self._log_lock:
            return [r for r in self.requests if r.method != "GET"]

    def reset_log(self) -> None:
        with self._log_lock:
            self.requests.clear()

    def _record_error(self, message: str) -> None:
        with self._log_lock:
            self.validation_errors.append(message)

    # -- snapshots (the fault-injection sweep starts each kill point from one) ----------------
    _STATE = ("_issues", "_comments", "_statuses", "_check_runs", "_labels", "_permissions",
              "_branches", "_rate_used")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            following = next(self._ids)
            self._ids = itertools.count(following)
            return {"ids": following,
                    **{name: copy.deepcopy(getattr(self, name)) for name in self._STATE}}

    def restore(self, snap: dict[str, Any]) -> None:
        with self._lock:
            self._ids = itertools.count(int(snap["ids"]))
            for name in self._STATE:
                setattr(self, name, copy.deepcopy(snap[name]))
            self._failures.clear()
            self._after.clear()

    # -- fault injection (rate limits) --------------------------------------------------------
    def fail_next(self, method: str, status: int, message: str, *,
                  headers: dict[str, str] | None = None, times: int = 1,
                  path: str = "") -> None:
        """The next `times` requests with `method` (and `path` in their path) get this error
        instead of an answer, e.g. GitHub's secondary rate limit: 403 + ``retry-after`` + "You
        have exceeded a secondary rate limit"."""
        with self._lock:
            for _ in range(times):
                self._failures.append((method, path, _Reply(status, {
                    "message": message,
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                }, dict(headers or {}))))

    def after_processing(self, method: str, path: str, what: str, *, times: int = 1,
                         delay: float = 0.0, status: int = 502) -> None:
        """The next `times` requests with `method` (and `path` in their path) are carried out,
        and then the answer is lost: `what` is "drop" (the connection closes unanswered),
        "delay" (the answer comes after `delay` seconds, past the client's timeout) or
        "error" (GitHub's 5xx although the change was made)."""
        with self._lock:
            for _ in range(times):
                self._after.append((method, path, what, delay if what == "delay" else
                                    float(status)))

    def _take_after(self, method: str, path: str) -> tuple[str, float] | None:
        with self._lock:
            for i, (m, part, what, value) in enumerate(self._after):
                if m == method and part in path:
                    del self._after[i]
                    return what, value
        return None

    def _take_failure(self, method: str, path: str) -> _Reply | None:
        with self._lock:
            for i, (m, part, reply) in enumerate(self._failures):
                if m == method and part in path:
                    del self._failures[i]
                    return reply
        return None

    # -- state helpers (the human on GitHub) ---------------------------------------------------
    def merge(self, number: int, *, by: str = "octocat") -> str:
        """Merges PR ``number`` like the merge button (``--no-ff`` merge commit of head into
        base, message "Merge pull request #N from owner/branch"). Returns the merge sha."""
        with self._lock:
            issue = self._pull_issue(number)
            pr = issue.pull
            assert pr is not None
            if issue.state != "open":
                raise ValueError(f"pull request #{number} is not open")
            self._refresh_pull(issue, full=True)
            message = (
                f"Merge pull request #{number} from {self.owner}/{pr.head_ref}\n\n{issue.title}"
            )
            if self._git is not None:
                sha = self._git.merge_no_ff(pr.base_ref, pr.head_sha, message, by)
            else:
                sha = _fake_sha("merge", number, pr.base_sha, pr.head_sha)
                self._branches[pr.base_ref] = sha
            now = _now()
            pr.merged = True
            pr.merged_at = now
            pr.merge_commit_sha = sha
            pr.merged_by = by
            pr.mergeable = None
            issue.state = "closed"
            issue.closed_at = now
            issue.closed_by = by
            issue.updated_at = now
            return sha

    def close(self, number: int) -> None:
        """Closes PR (or issue) ``number`` without merging."""
        with self._lock:
            issue = self._issue(number)
            self._set_state(issue, "closed", by="octocat")

    def add_comment(
        self, number: int, body: str, *, user: str = "reviewer", association: str = "MEMBER"
    ) -> int:
        with self._lock:
            return self._new_comment(self._issue(number), body, user, association).id

    def add_review(
        self,
        number: int,
        state: str = "APPROVED",
        *,
        user: str = "reviewer",
        body: str = "",
        association: str = "MEMBER",
    ) -> int:
        """Submits a review (state APPROVED / CHANGES_REQUESTED / COMMENTED) on PR ``number``."""
        with self._lock:
            issue = self._pull_issue(number)
            pr = issue.pull
            assert pr is not None
            self._refresh_pull(issue)
            review_id = self._next_id(2_000_000_000)
            pr_url = f"{self._repo_api}/pulls/{number}"
            html = f"{self._repo_html}/pull/{number}#pullrequestreview-{review_id}"
            pr.reviews.append(
                {
                    "id": review_id,
                    "node_id": _legacy_node_id("PullRequestReview", review_id),
                    "user": self._user(user),
                    "body": body,
                    "state": state,
                    "html_url": html,
                    "pull_request_url": pr_url,
                    "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
                    "submitted_at": _now(),
                    "commit_id": pr.head_sha,
                    "author_association": association,
                }
            )
            return review_id

    def pull(self, number: int) -> dict[str, Any]:
        """The PR as ``GET /pulls/{number}`` would return it."""
        with self._lock:
            return self._pull_json(self._pull_issue(number), full=True)

    def issue(self, number: int) -> dict[str, Any]:
        with self._lock:
            return self._issue_json(self._issue(number))

    def pulls(self) -> list[dict[str, Any]]:
        """Every PR in number order (issues share the numbers, as on GitHub)."""
        with self._lock:
            return [self._pull_json(i, full=True) for _, i in sorted(self._issues.items())
                    if i.pull is not None]

    def plain_issues(self) -> list[dict[str, Any]]:
        """Every issue that is not a PR, in number order."""
        with self._lock:
            return [self._issue_json(i) for _, i in sorted(self._issues.items())
                    if i.pull is None]

    def comments(self, number: int) -> list[dict[str, Any]]:
        with self._lock:
            issue = self._issue(number)
            return [self._comment_json(c) for c in self._comments_of(issue)]

    def statuses(self, sha: str) -> list[dict[str, Any]]:
        """Commit statuses posted for ``sha``, oldest first."""
        with self._lock:
            return [dict(st) for st in self._statuses.get(sha, [])]

    def labels(self, number: int) -> list[str]:
        with self._lock:
            return list(self._issue(number).labels)

    def set_permission(self, login: str, level: str) -> None:
        """`login`'s repository permission: admin, write, read or none (default: read, and
        admin for the owner)."""
        assert level in ("admin", "write", "read", "none")
        with self._lock:
            self._permissions[login] = level

    def set_author(self, number: int, login: str) -> None:
        """Pretend somebody else opened this issue or pull request (spoofing tests)."""
        with self._lock:
            self._issue(number).user = login

    # -- URLs and JSON shapes ------------------------------------------------------------------
    @property
    def _repo_api(self) -> str:
        return f"{self.base_url}/repos/{self.owner}/{self.repo}"

    @property
    def _repo_html(self) -> str:
        return f"{self._web}/{self.owner}/{self.repo}"

    def _next_id(self, base: int) -> int:
        return base + next(self._ids)

    def _user_id(self, login: str) -> int:
        if login in _KNOWN_USER_IDS:
            return _KNOWN_USER_IDS[login]
        return 1_000_000 + zlib.crc32(login.encode()) % 90_000_000

    def _user(self, login: str) -> dict[str, Any]:
        uid = self._user_id(login)
        if login.endswith("[bot]"):
            kind, html = "Bot", f"{self._web}/apps/{login[: -len('[bot]')]}"
        else:
            org = login == self.owner or login in _ORGANIZATIONS
            kind, html = ("Organization" if org else "User"), f"{self._web}/{login}"
        api = f"{self.base_url}/users/{quote(login)}"
        return {
            "login": login,
            "id": uid,
            "node_id": _legacy_node_id(kind, uid),
            "avatar_url": f"{self._web}/avatars/u/{uid}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": html,
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": kind,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _repository(self, *, full: bool = False) -> dict[str, Any]:
        api, html = self._repo_api, self._repo_html
        open_count = sum(1 for i in self._issues.values() if i.state == "open")
        host = self._web.split("://", 1)[1]
        data: dict[str, Any] = {
            "id": self._repo_id,
            "node_id": _legacy_node_id("Repository", self._repo_id),
            "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}",
            "private": True,
            "owner": self._user(self.owner),
            "html_url": html,
            "description": "Agent prompts managed by promptbot",
            "fork": False,
            "url": api,
            "forks_url": f"{api}/forks",
            "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events",
            "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers",
            "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges",
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}",
            "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
            "created_at": self._created_at,
            "updated_at": self._created_at,
            "pushed_at": _now(),
            "git_url": f"git://{host}/{self.owner}/{self.repo}.git",
            "ssh_url": f"git@{host}:{self.owner}/{self.repo}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "homepage": None,
            "size": 42,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": False,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "private",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": self.default_branch,
        }
        if full:
            data.update(
                {
                    "permissions": {
                        "admin": False,
                        "maintain": False,
                        "push": True,
                        "triage": True,
                        "pull": True,
                    },
                    "allow_squash_merge": True,
                    "allow_merge_commit": True,
                    "allow_rebase_merge": True,
                    "allow_auto_merge": False,
                    "delete_branch_on_merge": False,
                    "organization": self._user(self.owner),
                    "network_count": 0,
                    "subscribers_count": 1,
                }
            )
        return data

    def _label_json(self, name: str) -> dict[str, Any]:
        label = self._labels[name.lower()]
        return {
            "id": label.id,
            "node_id": _legacy_node_id("Label", label.id),
            "url": f"{self._repo_api}/labels/{quote(label.name)}",
            "name": label.name,
            "color": label.color,
            "default": label.default,
            "description": label.description,
        }

    def _reactions(self, url: str) -> dict[str, Any]:
        counts = dict.fromkeys(
            ["+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"], 0
        )
        return {"url": url, "total_count": 0, **counts}

    def _branch_json(self, ref: str, sha: str) -> dict[str, Any]:
        return {
            "label": f"{self.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": self._user(self.owner),
            "repo": self._repository(),
        }

    def _pull_json(self, issue: _Issue, *, full: bool) -> dict[str, Any]:
        pr = issue.pull
        assert pr is not None
        self._refresh_pull(issue, full=full)
        n, api, html = issue.number, self._repo_api, self._repo_html
        links = {
            "self": f"{api}/pulls/{n}",
            "html": f"{html}/pull/{n}",
            "issue": f"{api}/issues/{n}",
            "comments": f"{api}/issues/{n}/comments",
            "review_comments": f"{api}/pulls/{n}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{api}/pulls/{n}/commits",
            "statuses": f"{api}/statuses/{pr.head_sha}",
        }
        data: dict[str, Any] = {
            "url": links["self"],
            "id": pr.id,
            "node_id": _legacy_node_id("PullRequest", pr.id),
            "html_url": links["html"],
            "diff_url": f"{html}/pull/{n}.diff",
            "patch_url": f"{html}/pull/{n}.patch",
            "issue_url": links["issue"],
            "number": n,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self._user(issue.user),
            "body": issue.body,
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.closed_at,
            "merged_at": pr.merged_at,
            "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": [self._label_json(name) for name in issue.labels],
            "milestone": None,
            "draft": pr.draft,
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "head": self._branch_json(pr.head_ref, pr.head_sha),
            "base": self._branch_json(pr.base_ref, pr.base_sha),
            "_links": {key: {"href": value} for key, value in links.items()},
            "author_association": issue.association,
            "auto_merge": None,
            "active_lock_reason": None,
        }
        if full:
            if issue.state == "open":
                mergeable_state = "clean" if pr.mergeable else "dirty"
            else:
                mergeable_state = "unknown"
            data.update(
                {
                    "merged": pr.merged,
                    "mergeable": pr.mergeable,
                    "rebaseable": pr.mergeable,
                    "mergeable_state": mergeable_state,
                    "merged_by": self._user(pr.merged_by) if pr.merged_by else None,
                    "comments": len(self._comments_of(issue)),
                    "review_comments": 0,
                    "maintainer_can_modify": pr.maintainer_can_modify,
                    "commits": pr.commits,
                    "additions": pr.additions,
                    "deletions": pr.deletions,
                    "changed_files": pr.changed_files,
                }
            )
        return data

    def _issue_json(self, issue: _Issue) -> dict[str, Any]:
        n, api, html = issue.number, self._repo_api, self._repo_html
        kind = "pull" if issue.pull is not None else "issues"
        data: dict[str, Any] = {
            "url": f"{api}/issues/{n}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{n}/labels{{/name}}",
            "comments_url": f"{api}/issues/{n}/comments",
            "events_url": f"{api}/issues/{n}/events",
            "html_url": f"{html}/{kind}/{n}",
            "id": issue.id,
            "node_id": _legacy_node_id("Issue", issue.id),
            "number": n,
            "title": issue.title,
            "user": self._user(issue.user),
            "labels": [self._label_json(name) for name in issue.labels],
            "state": issue.state,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(self._comments_of(issue)),
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.closed_at,
            "author_association": issue.association,
            "active_lock_reason": None,
            "body": issue.body,
            "closed_by": self._user(issue.closed_by) if issue.closed_by else None,
            "reactions": self._reactions(f"{api}/issues/{n}/reactions"),
            "timeline_url": f"{api}/issues/{n}/timeline",
            "performed_via_github_app": None,
            "state_reason": issue.state_reason,
        }
        if issue.pull is not None:
            data["draft"] = issue.pull.draft
            data["pull_request"] = {
                "url": f"{api}/pulls/{n}",
                "html_url": f"{html}/pull/{n}",
                "diff_url": f"{html}/pull/{n}.diff",
                "patch_url": f"{html}/pull/{n}.patch",
                "merged_at": issue.pull.merged_at,
            }
        return data

    def _comment_json(self, comment: _Comment) -> dict[str, Any]:
        api = self._repo_api
        kind = "pull" if self._issues[comment.issue_number].pull is not None else "issues"
        return {
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"{self._repo_html}/{kind}/{comment.issue_number}"
            f"#issuecomment-{comment.id}",
            "issue_url": f"{api}/issues/{comment.issue_number}",
            "id": comment.id,
            "node_id": _legacy_node_id("IssueComment", comment.id),
            "user": self._user(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "author_association": comment.association,
            "body": comment.body,
            "reactions": self._reactions(f"{api}/issues/comments/{comment.id}/reactions"),
            "performed_via_github_app": None,
        }

    def _app_json(self) -> dict[str, Any]:
        return {
            "id": 15368,
            "slug": "github-actions",
            "node_id": "MDM6QXBwMTUzNjg=",
            "owner": self._user("github"),
            "name": "GitHub Actions",
            "description": "Automate your workflow from idea to production",
            "external_url": "https://help.github.com/en/actions",
            "html_url": f"{self._web}/apps/github-actions",
            "created_at": "2018-07-30T09:30:17Z",
            "updated_at": "2024-04-10T20:33:16Z",
            "permissions": {
                "actions": "write",
                "checks": "write",
                "contents": "write",
                "issues": "write",
                "metadata": "read",
                "pull_requests": "write",
                "statuses": "write",
            },
            "events": ["check_run", "check_suite", "pull_request", "push", "status"],
        }

    # -- state internals -----------------------------------------------------------------------
    def _new_label(
        self,
        name: str,
        *,
        color: str = "ededed",
        # GitHub sends null for a label without description, but the spec's inline label
        # schema of pull-request lists says string, not nullable: keep to the spec.
        description: str | None = "",
        default: bool = False,
    ) -> _Label:
        label = _Label(self._next_id(6_000_000_000), name, color, description, default)
        self._labels[name.lower()] = label
        return label

    def _canonical_labels(self, names: Iterable[str]) -> list[str]:
        """Label names as stored (case-insensitive match; unknown labels are created)."""
        out: list[str] = []
        for name in names:
            label = self._labels.get(name.lower()) or self._new_label(name)
            if label.name not in out:
                out.append(label.name)
        return out

    @staticmethod
    def _label_names(items: list[Any]) -> list[str]:
        return [item["name"] if isinstance(item, dict) else str(item) for item in items]

    def _issue(self, number: int) -> _Issue:
        try:
            return self._issues[number]
        except KeyError:
            raise KeyError(f"no issue or pull request #{number}") from None

    def _pull_issue(self, number: int) -> _Issue:
        issue = self._issue(number)
        if issue.pull is None:
            raise KeyError(f"#{number} is an issue, not a pull request")
        return issue

    def _comments_of(self, issue: _Issue) -> list[_Comment]:
        return [c for c in self._comments.values() if c.issue_number == issue.number]

    def _branch_sha(self, branch: str) -> str | None:
        if self._git is not None:
            return self._git.branch_sha(branch)
        return self._branches.get(branch)

    def _resolve(self, rev: str) -> str | None:
        if self._git is not None:
            return self._git.resolve(rev)
        if rev in self._branches:
            return self._branches[rev]
        return rev if re.fullmatch(r"[0-9a-f]{40}", rev) else None

    def _refresh_pull(self, issue: _Issue, *, full: bool = False) -> None:
        """Open PRs follow their branches (head.sha moves on push); closed ones are frozen."""
        pr = issue.pull
        if pr is None or issue.state != "open":
            return
        pr.head_sha = self._branch_sha(pr.head_ref) or pr.head_sha
        pr.base_sha = self._branch_sha(pr.base_ref) or pr.base_sha
        if not full:
            return
        if self._git is not None:
            pr.commits, pr.additions, pr.deletions, pr.changed_files = self._git.stats(
                pr.base_sha, pr.head_sha
            )
            pr.mergeable = self._git.merge_tree(pr.base_sha, pr.head_sha) is not None
        else:
            pr.mergeable = True

    def _new_issue(self, title: str, body: str | None, labels: list[str]) -> _Issue:
        now = _now()
        number = len(self._issues) + 1  # issues and pulls share one number sequence
        issue = _Issue(
            number=number,
            id=self._next_id(3_000_000_000),
            title=title,
            body=body,
            user=self.actor,
            association="NONE",
            created_at=now,
            updated_at=now,
            labels=self._canonical_labels(labels),
        )
        self._issues[number] = issue
        return issue

    def _new_comment(self, issue: _Issue, body: str, user: str, association: str) -> _Comment:
        now = _now()
        comment = _Comment(
            self._next_id(2_500_000_000), issue.number, body, user, association, now, now
        )
        self._comments[comment.id] = comment
        issue.updated_at = now
        return comment

    def _set_state(self, issue: _Issue, state: str, *, by: str, reason: str | None = None) -> None:
        if state == issue.state:
            return
        now = _now()
        issue.state = state
        issue.updated_at = now
        if state == "closed":
            issue.closed_at = now
            issue.closed_by = by
            issue.state_reason = None if issue.pull else (reason or "completed")
        else:
            issue.closed_at = None
            issue.closed_by = None
            issue.state_reason = None if issue.pull else "reopened"

    # -- request handling ----------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        split = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        bad_json = False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
                body = raw.decode("utf-8", "replace")
        in_api = split.path.startswith(API_PREFIX + "/")
        api_path = split.path[len(API_PREFIX) :] if in_api else split.path
        with self._log_lock:
            self.requests.append(RecordedRequest(method, unquote(api_path), query, body))

        route: _Route | None = None
        try:
            if bad_json:
                raise _HTTPError(400, "Problems parsing JSON")
            self._authenticate(h.headers.get("Authorization"))
            injected = self._take_failure(method, api_path)
            if injected is not None:
                self._send(h, injected, count=True)
                return
            match = None
            for candidate in _ROUTES if in_api else []:
                if candidate.method == method:
                    match = candidate.pattern.match(api_path)
                    if match:
                        route = candidate
                        break
            if route is None or match is None:
                self._record_error(f"{method} {split.path}: no operation in the subset matches")
                raise _not_found()
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            if "owner" in params and (
                params["owner"].lower() != self.owner.lower()
                or params["repo"].lower() != self.repo.lower()
            ):
                raise _not_found()
            where = f"{method} {route.template}"
            for err in self.spec.query_errors(method, route.template, query):
                self._record_error(f"request {where}: {err}")
            checked = body
            if route.template == _ADD_LABELS and isinstance(body, list):
                # The operation's description allows "an array of labels directly" (PyGithub
                # sends that); its schema only lists the {"labels": [...]} form.
                checked = {"labels": body}
            body_errors = self.spec.request_errors(method, route.template, checked)
            for err in body_errors:
                self._record_error(f"request body {where}: {err}")
            if body_errors:
                raise _validation_failed(
                    [{"resource": "Request", "code": "invalid", "message": e} for e in body_errors]
                )
            call = _Call(method, route.template, api_path, params, query, body)
            with self._lock:
                reply: _Reply = getattr(self, route.handler)(call)
        except _HTTPError as exc:
            reply = _Reply(exc.status, exc.body)
        except Exception:  # a stand-in bug: fail the test loudly, answer like GitHub would
            self._record_error(f"stand-in crashed on {method} {h.path}:\n{traceback.format_exc()}")
            reply = _Reply(500, _HTTPError(500, "Server Error").body)

        if route is not None:
            where = f"{method} {route.template} -> {reply.status}"
            for err in self.spec.response_errors(method, route.template, reply.status, reply.body):
                self._record_error(f"response {where}: {err}")
        elif reply.body is not None:
            for err in self.spec.component_errors("basic-error", reply.body):
                self._record_error(f"response {method} {split.path} -> {reply.status}: {err}")
        if method != "GET" and route is not None and self.write_hook is not None:
            self.write_hook(method, api_path)  # e.g. the fault sweep kills the client here
        lost = self._take_after(method, api_path) if route is not None else None
        if lost is not None:
            what, value = lost
            if what == "drop":
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            if what == "delay":
                time.sleep(value)
            else:
                reply = _Reply(int(value), _HTTPError(int(value), "Server Error").body)
        self._send(h, reply, count=route is None or route.template != "/rate_limit")

    def _authenticate(self, header: str | None) -> None:
        if not header:
            raise _HTTPError(401, "Requires authentication")
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or value.strip() != self.token:
            raise _HTTPError(401, "Bad credentials")

    def _send(self, h: BaseHTTPRequestHandler, reply: _Reply, *, count: bool) -> None:
        with self._log_lock:
            if count:
                self._rate_used += 1
            used = self._rate_used
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        h.send_response(reply.status)
        headers = {
            "X-RateLimit-Limit": str(self.RATE_LIMIT),
            "X-RateLimit-Remaining": str(max(self.RATE_LIMIT - used, 0)),
            "X-RateLimit-Reset": str(self._rate_reset),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": f"STANDIN:{used:08X}",
            **reply.headers,
        }
        for key, value in headers.items():
            h.send_header(key, value)
        if reply.status != 204:
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if payload and reply.status != 204:
            h.wfile.write(payload)

    def _paginate(self, call: _Call, items: list[Any]) -> _Reply:
        try:
            per_page = min(max(int(call.query.get("per_page", "30")), 1), 100)
        except ValueError:
            per_page = 30
        try:
            page = max(int(call.query.get("page", "1")), 1)
        except ValueError:
            page = 1
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(target: int, rel: str) -> str:
            query = {**call.query, "page": str(target)}
            return f'<{self.base_url}{call.raw_path}?{urlencode(query)}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(min(page - 1, last), "prev"))
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links.append(link(1, "first"))
        headers = {"Link": ", ".join(links)} if links else {}
        return _Reply(200, chunk, headers)

    def _issue_for(self, call: _Call) -> _Issue:
        issue = self._issues.get(int(call.params["issue_number"]))
        if issue is None:
            raise _not_found()
        return issue

    def _pull_for(self, call: _Call) -> _Issue:
        issue = self._issues.get(int(call.params["pull_number"]))
        if issue is None or issue.pull is None:
            raise _not_found()
        return issue

    # -- operations ----------------------------------------------------------------------------
    def _op_get_repo(self, call: _Call) -> _Reply:
        return _Reply(200, self._repository(full=True))

    def _op_permission(self, call: _Call) -> _Reply:
        login = call.params["username"]
        level = self._permissions.get(login, "admin" if login == self.owner else "read")
        role = {"admin": "admin", "write": "write", "read": "read", "none": "read"}[level]
        user = {**self._user(login), "permissions": {
            "pull": level != "none", "triage": level != "none", "push": level in ("write",
                                                                                   "admin"),
            "maintain": level == "admin", "admin": level == "admin"}, "role_name": role}
        return _Reply(200, {"permission": level, "role_name": role, "user": user})

    def _op_rate_limit(self, call: _Call) -> _Reply:
        remaining = max(self.RATE_LIMIT - self._rate_used, 0)
        core = {
            "limit": self.RATE_LIMIT,
            "used": self._rate_used,
            "remaining": remaining,
            "reset": self._rate_reset,
        }
        search = {"limit": 30, "used": 0, "remaining": 30, "reset": self._rate_reset}
        graphql = {"limit": 5000, "used": 0, "remaining": 5000, "reset": self._rate_reset}
        body = {"resources": {"core": core, "search": search, "graphql": graphql}, "rate": core}
        return _Reply(200, body)

    def _op_list_pulls(self, call: _Call) -> _Reply:
        q = call.query
        state = q.get("state", "open")
        pulls = [i for i in self._issues.values() if i.pull is not None]
        if state != "all":
            pulls = [i for i in pulls if i.state == state]
        if ":" in q.get("head", ""):
            # GitHub silently ignores a head filter without the "owner:" prefix.
            owner, _, branch = q["head"].partition(":")
            pulls = [
                i
                for i in pulls
                if i.pull is not None
                and i.pull.head_ref == branch
                and owner.lower() == self.owner.lower()
            ]
        if "base" in q:
            pulls = [i for i in pulls if i.pull is not None and i.pull.base_ref == q["base"]]
        sort = q.get("sort", "created")
        keys: dict[str, Callable[[_Issue], Any]] = {
            "created": lambda i: (i.created_at, i.number),
            "updated": lambda i: (i.updated_at, i.number),
            "popularity": lambda i: (len(self._comments_of(i)), i.number),
            "long-running": lambda i: (i.created_at, i.number),
        }
        default_direction = "desc" if sort == "created" else "asc"
        reverse = q.get("direction", default_direction) == "desc"
        pulls.sort(key=keys.get(sort, keys["created"]), reverse=reverse)
        return self._paginate(call, [self._pull_json(i, full=False) for i in pulls])

    def _op_create_pull(self, call: _Call) -> _Reply:
        body = call.body
        doc = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
        owner, _, head = str(body["head"]).rpartition(":")
        base = str(body["base"])
        head_sha = self._branch_sha(head)
        if self._git is None and head_sha is None and owner in ("", self.owner):
            head_sha = self._branches[head] = _fake_sha(self.owner, self.repo, head)
        if owner not in ("", self.owner) or head_sha is None:
            raise _validation_failed(
                [{"resource": "PullRequest", "code": "invalid", "field": "head"}], doc
            )
        base_sha = self._branch_sha(base)
        if base_sha is None:
            raise _validation_failed(
                [{"resource": "PullRequest", "code": "invalid", "field": "base"}], doc
            )
        for other in self._issues.values():
            pr = other.pull
            if pr and other.state == "open" and pr.head_ref == head and pr.base_ref == base:
                message = f"A pull request already exists for {self.owner}:{head}."
                raise _validation_failed(
                    [{"resource": "PullRequest", "code": "custom", "message": message}], doc
                )
        if self._git is not None and self._git.stats(base_sha, head_sha)[0] == 0:
            message = f"No commits between {base} and {head}"
            raise _validation_failed(
                [{"resource": "PullRequest", "code": "custom", "message": message}], doc
            )
        if "issue" in body:
            issue = self._issues.get(int(body["issue"]))
            if issue is None or issue.pull is not None:
                raise _validation_failed(
                    [{"resource": "PullRequest", "code": "invalid", "field": "issue"}], doc
                )
        elif "title" not in body:
            raise _validation_failed(
                [{"resource": "PullRequest", "code": "missing_field", "field": "title"}], doc
            )
        else:
            issue = self._new_issue(str(body["title"]), body.get("body"), [])
        issue.pull = _Pull(
            id=self._next_id(1_900_000_000),
            head_ref=head,
            head_sha=head_sha,
            base_ref=base,
            base_sha=base_sha,
            draft=bool(body.get("draft", False)),
            maintainer_can_modify=bool(body.get("maintainer_can_modify", False)),
        )
        data = self._pull_json(issue, full=True)
        return _Reply(201, data, {"Location": data["url"]})

    def _op_get_pull(self, call: _Call) -> _Reply:
        return _Reply(200, self._pull_json(self._pull_for(call), full=True))

    def _op_update_pull(self, call: _Call) -> _Reply:
        issue = self._pull_for(call)
        pr = issue.pull
        assert pr is not None
        body = call.body or {}
        doc = "https://docs.github.com/rest/pulls/pulls#update-a-pull-request"
        if "base" in body:
            if self._branch_sha(body["base"]) is None:
                raise _validation_failed(
                    [{"resource": "PullRequest", "code": "invalid", "field": "base"}], doc
                )
            pr.base_ref = body["base"]
        if "state" in body and body["state"] != issue.state:
            if body["state"] == "open":
                if pr.merged:
                    raise _validation_failed(
                        [
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": "state cannot be changed. The pull request is merged.",
                            }
                        ],
                        doc,
                    )
                if self._branch_sha(pr.head_ref) is None:
                    raise _validation_failed(
                        [
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": "state cannot be changed. The head branch was deleted.",
                            }
                        ],
                        doc,
                    )
            self._set_state(issue, body["state"], by=self.actor)
        if "title" in body:
            issue.title = body["title"]
        if "body" in body:
            issue.body = body["body"]
        if "maintainer_can_modify" in body:
            pr.maintainer_can_modify = bool(body["maintainer_can_modify"])
        issue.updated_at = _now()
        return _Reply(200, self._pull_json(issue, full=True))

    def _op_list_reviews(self, call: _Call) -> _Reply:
        issue = self._pull_for(call)
        assert issue.pull is not None
        return self._paginate(call, copy.deepcopy(issue.pull.reviews))

    def _op_list_comments(self, call: _Call) -> _Reply:
        issue = self._issue_for(call)
        comments = sorted(self._comments_of(issue), key=lambda c: c.id)
        if "since" in call.query:
            comments = [c for c in comments if c.updated_at >= call.query["since"]]
        return self._paginate(call, [self._comment_json(c) for c in comments])

    def _op_create_comment(self, call: _Call) -> _Reply:
        issue = self._issue_for(call)
        comment = self._new_comment(issue, call.body["body"], self.actor, "NONE")
        data = self._comment_json(comment)
        return _Reply(201, data, {"Location": data["url"]})

    def _op_update_comment(self, call: _Call) -> _Reply:
        comment = self._comments.get(int(call.params["comment_id"]))
        if comment is None:
            raise _not_found()
        comment.body = call.body["body"]
        comment.updated_at = _now()
        return _Reply(200, self._comment_json(comment))

    def _op_add_labels(self, call: _Call) -> _Reply:
        issue = self._issue_for(call)
        items = call.body if isinstance(call.body, list) else (call.body or {}).get("labels", [])
        names = self._canonical_labels(self._label_names(items))
        issue.labels += [n for n in names if n not in issue.labels]
        issue.updated_at = _now()
        return _Reply(200, [self._label_json(n) for n in issue.labels])

    def _op_create_issue(self, call: _Call) -> _Reply:
        body = call.body
        issue = self._new_issue(
            str(body["title"]), body.get("body"), self._label_names(body.get("labels") or [])
        )
        data = self._issue_json(issue)
        return _Reply(201, data, {"Location": data["url"]})

    def _op_list_issues(self, call: _Call) -> _Reply:
        q = call.query
        state = q.get("state", "open")
        issues = list(self._issues.values())
        if state != "all":
            issues = [i for i in issues if i.state == state]
        if q.get("labels"):
            wanted = {name.strip().lower() for name in q["labels"].split(",") if name.strip()}
            issues = [i for i in issues if wanted <= {n.lower() for n in i.labels}]
        if "creator" in q:
            issues = [i for i in issues if i.user.lower() == q["creator"].lower()]
        for key in ("assignee", "milestone"):
            if key in q and q[key] != "none":  # nothing here has assignees or milestones
                issues = []
        if "mentioned" in q:
            issues = [i for i in issues if f"@{q['mentioned']}" in (i.body or "")]
        if "since" in q:
            issues = [i for i in issues if i.updated_at >= q["since"]]
        sort = q.get("sort", "created")
        keys: dict[str, Callable[[_Issue], Any]] = {
            "created": lambda i: (i.created_at, i.number),
            "updated": lambda i: (i.updated_at, i.number),
            "comments": lambda i: (len(self._comments_of(i)), i.number),
        }
        reverse = q.get("direction", "desc") == "desc"
        issues.sort(key=keys.get(sort, keys["created"]), reverse=reverse)
        return self._paginate(call, [self._issue_json(i) for i in issues])

    def _op_get_issue(self, call: _Call) -> _Reply:
        return _Reply(200, self._issue_json(self._issue_for(call)))

    def _op_update_issue(self, call: _Call) -> _Reply:
        issue = self._issue_for(call)
        body = call.body or {}
        if "title" in body and body["title"] is not None:
            issue.title = str(body["title"])
        if "body" in body:
            issue.body = body["body"]
        if "labels" in body:
            issue.labels = self._canonical_labels(self._label_names(body["labels"] or []))
        if "state" in body:
            pr = issue.pull
            if body["state"] == "open" and pr is not None and pr.merged:
                raise _validation_failed(
                    [
                        {
                            "resource": "Issue",
                            "code": "custom",
                            "message": "state cannot be changed. The pull request is merged.",
                        }
                    ]
                )
            self._set_state(issue, body["state"], by=self.actor, reason=body.get("state_reason"))
        issue.updated_at = _now()
        return _Reply(200, self._issue_json(issue))

    def _op_create_status(self, call: _Call) -> _Reply:
        body = call.body
        sha = self._resolve(call.params["sha"])
        if sha is None:
            raise _HTTPError(
                422,
                f"No commit found for SHA: {call.params['sha']}",
                documentation_url="https://docs.github.com/rest/commits/statuses#create-a-commit-status",
            )
        now = _now()
        status_id = self._next_id(30_000_000_000)
        creator = self._user(self.actor)
        status = {
            "url": f"{self._repo_api}/statuses/{sha}",
            "avatar_url": creator["avatar_url"],
            "id": status_id,
            "node_id": _legacy_node_id("StatusContext", status_id),
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "created_at": now,
            "updated_at": now,
            "creator": creator,
        }
        self._statuses.setdefault(sha, []).append(status)
        return _Reply(201, copy.deepcopy(status), {"Location": status["url"]})

    def _op_combined_status(self, call: _Call) -> _Reply:
        sha = self._resolve(call.params["ref"])
        if sha is None:
            raise _not_found()
        latest: dict[str, dict[str, Any]] = {}
        for status in self._statuses.get(sha, []):
            latest[status["context"].lower()] = status  # later posts replace earlier ones
        statuses = sorted(latest.values(), key=lambda s: s["id"], reverse=True)
        states = {s["state"] for s in statuses}
        if states & {"error", "failure"}:
            combined = "failure"
        elif not statuses or "pending" in states:
            combined = "pending"
        else:
            combined = "success"
        keys = (
            "url",
            "avatar_url",
            "id",
            "node_id",
            "state",
            "description",
            "target_url",
            "context",
            "created_at",
            "updated_at",
        )
        body = {
            "state": combined,
            "statuses": [{k: s[k] for k in keys} for s in statuses],
            "sha": sha,
            "total_count": len(statuses),
            "repository": self._repository(),
            "commit_url": f"{self._repo_api}/commits/{sha}",
            "url": f"{self._repo_api}/commits/{sha}/status",
        }
        return _Reply(200, body)

    def _op_create_check_run(self, call: _Call) -> _Reply:
        body = call.body
        doc = "https://docs.github.com/rest/checks/runs#create-a-check-run"
        sha = self._resolve(body["head_sha"])
        if sha is None:
            raise _HTTPError(
                422, f"No commit found for SHA: {body['head_sha']}", documentation_url=doc
            )
        conclusion = body.get("conclusion")
        status = "completed" if conclusion else body.get("status", "queued")
        if status == "completed" and not conclusion:
            raise _validation_failed(
                [{"resource": "CheckRun", "code": "missing_field", "field": "conclusion"}], doc
            )
        now = _now()
        run_id = self._next_id(25_000_000_000)
        api = self._repo_api
        output = body.get("output") or {}
        pulls = []
        for issue in self._issues.values():
            if issue.pull is None or issue.state != "open":
                continue
            self._refresh_pull(issue)
            if issue.pull.head_sha == sha:
                repo = {"id": self._repo_id, "url": api, "name": self.repo}
                pulls.append(
                    {
                        "id": issue.pull.id,
                        "number": issue.number,
                        "url": f"{api}/pulls/{issue.number}",
                        "head": {
                            "ref": issue.pull.head_ref,
                            "sha": issue.pull.head_sha,
                            "repo": repo,
                        },
                        "base": {
                            "ref": issue.pull.base_ref,
                            "sha": issue.pull.base_sha,
                            "repo": repo,
                        },
                    }
                )
        run = {
            "id": run_id,
            "head_sha": sha,
            "node_id": _legacy_node_id("CheckRun", run_id),
            "external_id": body.get("external_id", ""),
            "url": f"{api}/check-runs/{run_id}",
            "html_url": f"{self._repo_html}/runs/{run_id}",
            "details_url": body.get("details_url", f"{self._repo_html}/runs/{run_id}"),
            "status": status,
            "conclusion": conclusion,
            "started_at": body.get("started_at", now),
            "completed_at": body.get("completed_at", now) if status == "completed" else None,
            "output": {
                "title": output.get("title"),
                "summary": output.get("summary"),
                "text": output.get("text"),
                "annotations_count": len(output.get("annotations", [])),
                "annotations_url": f"{api}/check-runs/{run_id}/annotations",
            },
            "name": body["name"],
            "check_suite": {"id": self._next_id(20_000_000_000)},
            "app": self._app_json(),
            "pull_requests": pulls,
        }
        self._check_runs.append(run)
        return _Reply(201, copy.deepcopy(run))

    def _op_delete_ref(self, call: _Call) -> _Reply:
        ref = call.params["ref"]
        doc = "https://docs.github.com/rest/git/refs#delete-a-reference"
        if self._git is not None:
            if not self._git.ref_exists(ref):
                raise _HTTPError(422, "Reference does not exist", documentation_url=doc)
            self._git.delete_ref(ref)
        else:
            branch = ref.removeprefix("heads/")
            if not ref.startswith("heads/") or branch not in self._branches:
                raise _HTTPError(422, "Reference does not exist", documentation_url=doc)
            del self._branches[branch]
        if ref.startswith("heads/"):
            branch = ref.removeprefix("heads/")
            for issue in self._issues.values():  # GitHub closes PRs whose head branch is gone
                if (
                    issue.pull is not None
                    and issue.state == "open"
                    and issue.pull.head_ref == branch
                ):
                    self._set_state(issue, "closed", by=self.actor)
        return _Reply(204)
