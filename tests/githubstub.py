"""A stand-in for the GitHub REST API, for the tests: a small app on loopback that keeps
users, repositories, releases, assets and contents, and answers the way GitHub does.

Held to GitHub: every JSON response it gives is validated against the response schema of
its operation in GitHub's official OpenAPI description (``github_api/openapi.json``, cut
from ``@octokit/openapi``); violations are collected in ``violations`` for the tests to
assert empty. Response bodies are built from recorded real responses
(``github_api/fixtures``) with our values filled in, and ``test_github_standin.py``
replays the recorded exchanges against it.

Like GitHub: the upload host is separate (here the ``/uploads`` prefix, as on GitHub
Enterprise Server); ``GET …/releases/assets/{id}`` with ``Accept:
application/octet-stream`` answers 302 to a signed, expiring download URL; a private
repository a token cannot see is a 404; a token without push access gets 403 from the
collaborator-permission endpoint but sees its ``permissions`` on the repository object.

Where the description is silent, GitHub's observed behaviour is held to the nearest
documented schema: 401 and 5xx (any endpoint) to the basic-error shape; publishing a draft
whose tag another published release holds (``PATCH …/releases/{id}``) answers 422 with
the validation-error body that create-release documents for the same conflict.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a2wsgi import ASGIMiddleware
from openapi_schema_validator import OAS30Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from wharftest.inprocess import ThreadedWaitress

HERE = Path(__file__).parent / "github_api"
SPEC = json.loads((HERE / "openapi.json").read_text())
FIXTURES = {p.stem: json.loads(p.read_text()) for p in (HERE / "fixtures").glob("*.json")}
DOCS = "https://docs.github.com/rest"
GENERIC_STATUSES = {401, 500, 502, 503}
NOW = "2026-01-01T00:00:00Z"

RELEASE = FIXTURES["release-assets"][0]["response"]
ASSET = FIXTURES["release-assets"][1]["response"]
REPOSITORY = FIXTURES["get-repository"][0]["response"]
CONTENT = FIXTURES["create-file"][0]["response"]["content"]
COMMIT = FIXTURES["create-file"][0]["response"]["commit"]
SIMPLE_USER = RELEASE["author"]

PERMISSIONS = {  # role -> the repository object's permissions
    "admin": dict(admin=True, maintain=True, push=True, triage=True, pull=True),
    "maintain": dict(admin=False, maintain=True, push=True, triage=True, pull=True),
    "write": dict(admin=False, maintain=False, push=True, triage=True, pull=True),
    "triage": dict(admin=False, maintain=False, push=False, triage=True, pull=True),
    "read": dict(admin=False, maintain=False, push=False, triage=False, pull=True),
}


@dataclass
class Asset:
    id: int
    name: str
    label: str
    content_type: str
    data_path: Path
    size: int

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data_path.read_bytes()).hexdigest()


@dataclass
class Release:
    id: int
    tag_name: str
    name: str
    body: str
    draft: bool
    target_commitish: str
    assets: dict[int, Asset] = field(default_factory=dict)
    created_at: str = NOW
    published_at: str | None = None


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    private: bool
    default_branch: str
    roles: dict[str, str] = field(default_factory=dict)  # login -> role
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (branch, path)
    releases: dict[int, Release] = field(default_factory=dict)
    pages: bool = False
    labels: list[str] = field(default_factory=list)


class GitHubStandIn:
    """The stand-in's state and its HTTP app. ``url`` is its base URL once started."""

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        self.storage.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.tokens: dict[str, str] = {}  # token -> login
        self.orgs: set[str] = set()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.ids = itertools.count(1000)
        self.asset_ids = itertools.count(1000)  # GitHub: a separate id space from releases
        self.violations: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        self.fail_with: list[int] = []  # statuses to answer the next requests with
        self.fail_matching: list[tuple[str, int]] = []  # (path part, status), once each
        self.delay = 0.0  # seconds to sleep before answering (timeouts)
        self.url = ""
        self._signing_key = secrets.token_bytes(16)
        self._validators = self._build_validators()
        self._server: Any = None

    # -- set-up from tests ---------------------------------------------------------------
    def add_token(self, login: str) -> str:
        token = "ghp_" + secrets.token_hex(18)
        self.tokens[token] = login
        return token

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        private: bool = True,
        branch: str = "master",
        roles: dict[str, str] | None = None,
    ) -> Repo:
        repo = Repo(next(self.ids), owner, name, private, branch, dict(roles or {}))
        repo.branches[branch] = hashlib.sha1(f"{owner}/{name}".encode()).hexdigest()
        self.repos[(owner, name)] = repo
        return repo

    # -- serving ----------------------------------------------------------------------------
    def start(self) -> GitHubStandIn:
        self._server = ThreadedWaitress(
            ASGIMiddleware(self.app()), threads=8, clear_untrusted_proxy_headers=False
        )
        self.url = f"http://127.0.0.1:{self._server.port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def app(self) -> Starlette:
        api = "/repos/{owner}/{repo}"
        routes = [
            Route("/user", self.get_user),
            Route("/user/repos", self.create_repo, methods=["POST"]),
            Route("/orgs/{org}", self.get_org),
            Route("/orgs/{org}/repos", self.create_repo, methods=["POST"]),
            Route("/rate_limit", self.rate_limit),
            Route(api, self.get_repo),
            Route(api + "/collaborators/{username}/permission", self.get_permission),
            Route(api + "/contents/{path:path}", self.contents, methods=["GET", "PUT"]),
            Route(api + "/git/ref/{ref:path}", self.get_ref),
            Route(api + "/git/refs", self.create_ref, methods=["POST"]),
            Route(api + "/pages", self.create_pages, methods=["POST"]),
            Route(api + "/labels", self.create_label, methods=["POST"]),
            Route(api + "/releases", self.releases, methods=["GET", "POST"]),
            Route(api + "/releases/tags/{tag:path}", self.release_by_tag),
            Route(
                api + "/releases/assets/{asset_id:int}",
                self.asset,
                methods=["GET", "PATCH", "DELETE"],
            ),
            Route(
                api + "/releases/{release_id:int}", self.release, methods=["GET", "PATCH", "DELETE"]
            ),
            Route(api + "/releases/{release_id:int}/assets", self.list_assets),
            Route(
                "/uploads" + api + "/releases/{release_id:int}/assets",
                self.upload_asset,
                methods=["POST"],
            ),
            Route("/_signed/{asset_id:int}", self.signed_download),
            Route("/{owner}/{repo}/releases/download/{tag}/{name}", self.browser_download),
        ]

        async def github_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, _Error)
            return _json({"message": exc.message, "documentation_url": DOCS}, exc.status)

        app = Starlette(routes=routes, exception_handlers={_Error: github_error})

        async def guarded(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            status_holder: list[int] = []
            body: list[bytes] = []
            ctype: list[str] = []

            async def capture(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status_holder.append(message["status"])
                    headers = dict((k.decode().lower(), v.decode()) for k, v in message["headers"])
                    ctype.append(headers.get("content-type", ""))
                elif message["type"] == "http.response.body":
                    body.append(message.get("body", b""))
                await send(message)

            matching = [f for f in self.fail_matching if f[0] in scope["path"]]
            if matching:
                self.fail_matching.remove(matching[0])
                self.fail_with.insert(0, matching[0][1])
            if self.fail_with:
                status = self.fail_with.pop(0)
                response = JSONResponse({"message": "Server Error"}, status_code=status)
                await response(scope, receive, send)
                return
            await app(scope, receive, capture)
            status = status_holder[0] if status_holder else 0
            self.requests.append((scope["method"], scope["path"], status))
            if ctype and ctype[0].startswith("application/json"):
                self._validate(scope["method"], scope["path"], status, b"".join(body))

        return guarded  # type: ignore[return-value]

    # -- validation against GitHub's OpenAPI description ---------------------------------------
    def _build_validators(self) -> list[tuple[str, re.Pattern[str], dict[str, Any]]]:
        create_release = SPEC["paths"]["/repos/{owner}/{repo}/releases"]["post"]["responses"]
        undocumented = {
            ("patch", "/repos/{owner}/{repo}/releases/{release_id}"): {"422": create_release["422"]}
        }
        table = []
        for path, operations in SPEC["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", path) + "$")
            if path.endswith("/contents/{path}"):
                pattern = re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", path[:-6]) + "/.+$")
            for method, operation in operations.items():
                responses = {**operation["responses"], **undocumented.get((method, path), {})}
                table.append((method.upper(), pattern, responses))
        return table

    def schema_for(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        """The JSON schema GitHub's description gives for this response, if any."""
        path = path.split("?")[0].removeprefix("/uploads")
        for op_method, pattern, responses in self._validators:
            if op_method == method.upper() and pattern.match(path):
                response = responses.get(str(status)) or {}
                schema = (response.get("content") or {}).get("application/json", {}).get("schema")
                return dict(schema) if schema else None
        return None

    def _validate(self, method: str, path: str, status: int, body: bytes) -> None:
        path = path.removeprefix("/uploads")
        for op_method, pattern, responses in self._validators:
            if op_method == method and pattern.match(path):
                response = responses.get(str(status))
                if response is None and status in GENERIC_STATUSES:
                    # GitHub answers these on any endpoint (bad credentials, outages), with
                    # its basic-error body, though the description lists them on few.
                    message = json.loads(body).get("message") if body else None
                    if not isinstance(message, str):
                        self.violations.append(f"{method} {path} {status}: no 'message'")
                    return
                if response is None:
                    self.violations.append(
                        f"{method} {path}: status {status} not in the description"
                    )
                    return
                schema = (response.get("content") or {}).get("application/json", {}).get("schema")
                if schema is None:
                    return
                errors = sorted(OAS30Validator(schema).iter_errors(json.loads(body)), key=str)
                for error in errors[:3]:
                    where = "/".join(map(str, error.absolute_path))
                    self.violations.append(f"{method} {path} {status} at {where}: {error.message}")
                return

    # -- helpers ----------------------------------------------------------------------------
    def _login(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("token", "bearer"):
            return self.tokens.get(token.strip())
        return None

    def _who(self, request: Request) -> str:
        login = self._login(request)
        if login is None:
            raise _Error(401, "Bad credentials")
        return login

    def _repo(self, request: Request, need: str = "pull") -> tuple[Repo, str]:
        login = self._who(request)
        key = (request.path_params["owner"], request.path_params["repo"])
        repo = self.repos.get(key)
        role = repo.roles.get(login) if repo else None
        if repo is None or (repo.private and role is None):
            raise _Error(404, "Not Found")
        allowed = PERMISSIONS.get(role or "", dict(pull=not repo.private))
        if not allowed.get(need, False):
            raise _Error(403, "Resource not accessible by personal access token")
        return repo, login

    def _user(self, login: str) -> dict[str, Any]:
        user = copy.deepcopy(SIMPLE_USER)
        uid = int(hashlib.sha1(login.encode()).hexdigest()[:6], 16)
        user.update(
            login=login,
            id=uid,
            node_id=f"U_{uid}",
            url=f"{self.url}/users/{login}",
            html_url=f"https://github.com/{login}",
            type="Organization" if login in self.orgs else "User",
        )
        return user

    def _repo_json(self, repo: Repo, login: str | None) -> dict[str, Any]:
        data = copy.deepcopy(REPOSITORY)
        full = f"{repo.owner}/{repo.name}"
        base = f"{self.url}/repos/{full}"
        for key, value in list(data.items()):
            if (
                isinstance(value, str)
                and "api.github.com/repos/octokit-fixture-org/hello-world" in value
            ):
                data[key] = value.replace(
                    "https://api.github.com/repos/octokit-fixture-org/hello-world", base
                )
        data.update(
            id=repo.id,
            node_id=f"R_{repo.id}",
            name=repo.name,
            full_name=full,
            private=repo.private,
            visibility="private" if repo.private else "public",
            default_branch=repo.default_branch,
            owner=self._user(repo.owner),
            html_url=f"https://github.com/{full}",
            url=base,
        )
        role = repo.roles.get(login or "")
        data.setdefault("has_discussions", False)
        data["permissions"] = dict(PERMISSIONS.get(role or "", PERMISSIONS["read"]))
        if role is None:
            data["permissions"] = dict(
                admin=False, maintain=False, push=False, triage=False, pull=True
            )
        data.pop("organization", None) if repo.owner not in self.orgs else None
        return data

    def _release_json(self, repo: Repo, release: Release) -> dict[str, Any]:
        data = copy.deepcopy(RELEASE)
        base = f"{self.url}/repos/{repo.owner}/{repo.name}/releases/{release.id}"
        data.update(
            id=release.id,
            node_id=f"RE_{release.id}",
            tag_name=release.tag_name,
            name=release.name,
            body=release.body,
            draft=release.draft,
            prerelease=False,
            target_commitish=release.target_commitish,
            created_at=release.created_at,
            published_at=release.published_at,
            url=base,
            assets_url=base + "/assets",
            upload_url=f"{self.url}/uploads/repos/{repo.owner}/{repo.name}/releases/{release.id}/assets{{?name,label}}",
            html_url=f"https://github.com/{repo.owner}/{repo.name}/releases/tag/{release.tag_name}",
            tarball_url=f"{self.url}/repos/{repo.owner}/{repo.name}/tarball/{release.tag_name}",
            zipball_url=f"{self.url}/repos/{repo.owner}/{repo.name}/zipball/{release.tag_name}",
            author=self._user(repo.owner),
            assets=[self._asset_json(repo, release, a) for a in release.assets.values()],
        )
        return data

    def _asset_json(self, repo: Repo, release: Release, asset: Asset) -> dict[str, Any]:
        data = copy.deepcopy(ASSET)
        data.update(
            id=asset.id,
            node_id=f"RA_{asset.id}",
            name=asset.name,
            label=asset.label,
            content_type=asset.content_type,
            size=asset.size,
            state="uploaded",
            url=f"{self.url}/repos/{repo.owner}/{repo.name}/releases/assets/{asset.id}",
            browser_download_url=(
                f"{self.url}/{repo.owner}/{repo.name}/releases/download/{release.tag_name}/{asset.name}"
            ),
            uploader=self._user(repo.owner),
            created_at=NOW,
            updated_at=NOW,
            digest=asset.digest,
        )
        return data

    def _signature(self, asset_id: int, lifetime: int) -> str:
        expires = int(time.time()) + lifetime
        mac = hmac.new(self._signing_key, f"{asset_id}:{expires}".encode(), "sha256").hexdigest()
        return f"X-Amz-Expires={lifetime}&expires={expires}&X-Amz-Signature={mac}"

    def _find_release(self, repo: Repo, release_id: int) -> Release:
        release = repo.releases.get(release_id)
        if release is None:
            raise _Error(404, "Not Found")
        return release

    # -- endpoints --------------------------------------------------------------------------
    async def get_user(self, request: Request) -> Response:
        login = self._who(request)
        user = self._user(login)
        user.update(
            name=login,
            company=None,
            blog="",
            location=None,
            email=None,
            hireable=None,
            bio=None,
            public_repos=0,
            public_gists=0,
            followers=0,
            following=0,
            created_at=NOW,
            updated_at=NOW,
            private_gists=0,
            total_private_repos=0,
            owned_private_repos=0,
            disk_usage=0,
            collaborators=0,
            two_factor_authentication=True,
            plan={"name": "free", "space": 976562499, "private_repos": 10000, "collaborators": 0},
        )
        return _json(user)

    async def get_org(self, request: Request) -> Response:
        self._who(request)
        org = request.path_params["org"]
        if org not in self.orgs:
            raise _Error(404, "Not Found")
        uid = self._user(org)["id"]
        return _json(
            {
                "login": org,
                "id": uid,
                "node_id": f"O_{uid}",
                "url": f"{self.url}/orgs/{org}",
                "repos_url": f"{self.url}/orgs/{org}/repos",
                "events_url": f"{self.url}/orgs/{org}/events",
                "hooks_url": f"{self.url}/orgs/{org}/hooks",
                "issues_url": f"{self.url}/orgs/{org}/issues",
                "members_url": f"{self.url}/orgs/{org}/members{{/member}}",
                "public_members_url": f"{self.url}/orgs/{org}/public_members{{/member}}",
                "avatar_url": "https://avatars.githubusercontent.com/u/1",
                "description": None,
                "html_url": f"https://github.com/{org}",
                "has_organization_projects": True,
                "has_repository_projects": True,
                "public_repos": 0,
                "public_gists": 0,
                "followers": 0,
                "following": 0,
                "created_at": NOW,
                "updated_at": NOW,
                "type": "Organization",
                "archived_at": None,
            }
        )

    async def rate_limit(self, request: Request) -> Response:
        core = {"limit": 5000, "remaining": 4999, "reset": int(time.time()) + 3600, "used": 1}
        return _json({"resources": {"core": core, "search": core}, "rate": core})

    async def create_repo(self, request: Request) -> Response:
        login = self._who(request)
        owner = request.path_params.get("org", login)
        if "org" in request.path_params and request.path_params["org"] not in self.orgs:
            raise _Error(404, "Not Found")
        data = await request.json()
        name = data.get("name", "")
        if (owner, name) in self.repos:
            return _validation(
                "Repository", "custom", "name", "name already exists on this account"
            )
        repo = self.add_repo(
            owner,
            name,
            private=bool(data.get("private", False)),
            branch="main",
            roles={login: "admin"},
        )
        if data.get("auto_init"):
            repo.files[("main", "README.md")] = f"# {name}\n".encode()
        return _json(self._repo_json(repo, login), 201)

    async def get_repo(self, request: Request) -> Response:
        repo, login = self._repo(request)
        return _json(self._repo_json(repo, login))

    async def get_permission(self, request: Request) -> Response:
        repo, _ = self._repo(request, need="push")  # GitHub: 403 without push access
        username = request.path_params["username"]
        role = repo.roles.get(username, "none")
        legacy = {
            "admin": "admin",
            "maintain": "write",
            "write": "write",
            "triage": "read",
            "read": "read",
        }.get(role, "none")
        return _json({"permission": legacy, "role_name": role, "user": self._user(username)})

    async def contents(self, request: Request) -> Response:
        need = "push" if request.method == "PUT" else "pull"
        repo, _ = self._repo(request, need=need)
        path = request.path_params["path"]
        if request.method == "GET":
            branch = request.query_params.get("ref", repo.default_branch)
            data = repo.files.get((branch, path))
            if data is None:
                listing = [
                    self._content_json(repo, branch, p, d, with_content=False)
                    for (b, p), d in repo.files.items()
                    if b == branch and "/" not in p and not path.strip("/")
                ]
                if listing:
                    return _json(listing)
                raise _Error(404, "Not Found")
            if "raw" in request.headers.get("accept", ""):
                return Response(data, media_type="application/vnd.github.raw")
            etag = f'"{_blob_sha(data)}"'  # GitHub: 304 for a matching If-None-Match
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            item = self._content_json(repo, branch, path, data, with_content=True)
            return _json(item, headers={"ETag": etag})
        body = await request.json()
        branch = body.get("branch", repo.default_branch)
        if branch not in repo.branches:
            raise _Error(404, f"Branch {branch} not found")
        existing = repo.files.get((branch, path))
        content = base64.b64decode(body.get("content", ""))
        if existing is not None and "sha" not in body:
            return _validation_message('Invalid request.\n\n"sha" wasn\'t supplied.')
        if existing is not None and body["sha"] != _blob_sha(existing):
            raise _Error(409, f"{path} does not match {body['sha']}")
        if existing is None and body.get("sha"):
            raise _Error(409, f"{path} does not match {body['sha']}")
        repo.files[(branch, path)] = content
        repo.branches[branch] = hashlib.sha1(content + path.encode()).hexdigest()
        commit = copy.deepcopy(COMMIT)
        commit.update(sha=repo.branches[branch], message=body.get("message", ""))
        result = {
            "content": self._content_json(repo, branch, path, content, with_content=False),
            "commit": commit,
        }
        return _json(result, 200 if existing is not None else 201)

    def _content_json(
        self, repo: Repo, branch: str, path: str, data: bytes, *, with_content: bool
    ) -> dict:
        item = copy.deepcopy(CONTENT)
        sha = _blob_sha(data)
        base = f"{self.url}/repos/{repo.owner}/{repo.name}"
        item.update(
            name=path.rsplit("/", 1)[-1],
            path=path,
            sha=sha,
            size=len(data),
            url=f"{base}/contents/{path}?ref={branch}",
            git_url=f"{base}/git/blobs/{sha}",
            html_url=f"https://github.com/{repo.owner}/{repo.name}/blob/{branch}/{path}",
            download_url=f"{self.url}/raw/{repo.owner}/{repo.name}/{branch}/{path}",
        )
        item["_links"] = {"self": item["url"], "git": item["git_url"], "html": item["html_url"]}
        if with_content:
            item["content"] = base64.encodebytes(data).decode() if len(data) < 1 << 20 else ""
            item["encoding"] = "base64" if len(data) < 1 << 20 else "none"
        return item

    async def get_ref(self, request: Request) -> Response:
        repo, _ = self._repo(request)
        ref = request.path_params["ref"]
        branch = ref.removeprefix("heads/")
        if branch not in repo.branches:
            raise _Error(404, "Not Found")
        return _json(self._ref_json(repo, branch))

    def _ref_json(self, repo: Repo, branch: str) -> dict[str, Any]:
        base = f"{self.url}/repos/{repo.owner}/{repo.name}/git"
        sha = repo.branches[branch]
        return {
            "ref": f"refs/heads/{branch}",
            "node_id": f"REF_{sha[:8]}",
            "url": f"{base}/refs/heads/{branch}",
            "object": {"type": "commit", "sha": sha, "url": f"{base}/commits/{sha}"},
        }

    async def create_ref(self, request: Request) -> Response:
        repo, _ = self._repo(request, need="push")
        body = await request.json()
        branch = str(body.get("ref", "")).removeprefix("refs/heads/")
        if branch in repo.branches:
            return _validation_message("Reference already exists")
        repo.branches[branch] = body["sha"]
        for (b, p), d in list(repo.files.items()):
            if b == repo.default_branch:
                repo.files[(branch, p)] = d
        return _json(self._ref_json(repo, branch), 201)

    async def create_pages(self, request: Request) -> Response:
        repo, _ = self._repo(request, need="admin")
        if repo.pages:
            return _validation_message("GitHub Pages is already enabled.")
        repo.pages = True
        return _json(
            {
                "url": f"{self.url}/repos/{repo.owner}/{repo.name}/pages",
                "status": "building",
                "cname": None,
                "custom_404": False,
                "html_url": f"https://{repo.owner}.github.io/{repo.name}/",
                "build_type": "workflow",
                "source": {"branch": repo.default_branch, "path": "/"},
                "public": not repo.private,
                "https_enforced": True,
            },
            201,
        )

    async def create_label(self, request: Request) -> Response:
        repo, _ = self._repo(request, need="push")
        body = await request.json()
        if not re.fullmatch(r"[0-9a-fA-F]{6}", str(body.get("color", "ededed"))):
            return _json(
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Label", "code": "invalid", "field": "color"}],
                    "documentation_url": "https://docs.github.com/rest/reference/issues#create-a-label",
                },
                422,
            )
        repo.labels.append(body["name"])
        return _json(
            {"id": next(self.ids), "name": body["name"], "color": body.get("color", "ededed")}, 201
        )

    async def releases(self, request: Request) -> Response:
        if request.method == "POST":
            repo, _ = self._repo(request, need="push")
            body = await request.json()
            tag = body["tag_name"]
            draft = bool(body.get("draft", False))
            if not draft and any(r.tag_name == tag and not r.draft for r in repo.releases.values()):
                return _validation("Release", "already_exists", "tag_name")
            release = Release(
                next(self.ids),
                tag,
                body.get("name") or tag,
                body.get("body") or "",
                draft,
                body.get("target_commitish", repo.default_branch),
                published_at=None if draft else NOW,
            )
            repo.releases[release.id] = release
            return _json(self._release_json(repo, release), 201)
        repo, login = self._repo(request)
        can_push = PERMISSIONS.get(repo.roles.get(login, ""), {}).get("push", False)
        visible = [
            r
            for r in sorted(repo.releases.values(), key=lambda r: -r.id)
            if can_push or not r.draft
        ]  # drafts only for those who can push
        per_page = min(int(request.query_params.get("per_page", 30)), 100)
        page = int(request.query_params.get("page", 1))
        chunk = visible[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(visible):
            base = f"{self.url}/repos/{repo.owner}/{repo.name}/releases"
            last = (len(visible) + per_page - 1) // per_page
            headers["Link"] = (
                f'<{base}?per_page={per_page}&page={page + 1}>; rel="next", '
                f'<{base}?per_page={per_page}&page={last}>; rel="last"'
            )
        return _json([self._release_json(repo, r) for r in chunk], headers=headers)

    async def release_by_tag(self, request: Request) -> Response:
        repo, _ = self._repo(request)
        tag = request.path_params["tag"]
        for release in repo.releases.values():
            if release.tag_name == tag and not release.draft:
                return _json(self._release_json(repo, release))
        raise _Error(404, "Not Found")

    async def release(self, request: Request) -> Response:
        need = "pull" if request.method == "GET" else "push"
        repo, _ = self._repo(request, need=need)
        release = self._find_release(repo, request.path_params["release_id"])
        if request.method == "DELETE":
            del repo.releases[release.id]
            return Response(status_code=204)
        if request.method == "PATCH":
            body = await request.json()
            if body.get("draft") is False and release.draft:
                if any(
                    r.tag_name == release.tag_name and not r.draft for r in repo.releases.values()
                ):
                    return _validation("Release", "already_exists", "tag_name")
                release.draft = False
                release.published_at = NOW
            for key in ("name", "body", "tag_name"):
                if key in body:
                    setattr(release, key, body[key])
        return _json(self._release_json(repo, release))

    async def list_assets(self, request: Request) -> Response:
        repo, _ = self._repo(request)
        release = self._find_release(repo, request.path_params["release_id"])
        return _json([self._asset_json(repo, release, a) for a in release.assets.values()])

    async def upload_asset(self, request: Request) -> Response:
        repo, _ = self._repo(request, need="push")
        release = self._find_release(repo, request.path_params["release_id"])
        name = request.query_params.get("name", "")
        if any(a.name == name for a in release.assets.values()):
            return _json(
                {
                    "message": "Validation Failed",
                    "request_id": "0000:00000:0000000:0000000:00000000",
                    "documentation_url": DOCS,
                    "errors": [
                        {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}
                    ],
                },
                422,
            )
        asset_id = next(self.asset_ids)
        path = self.storage / f"asset-{asset_id}"
        size = 0
        with path.open("wb") as handle:
            async for chunk in request.stream():
                handle.write(chunk)
                size += len(chunk)
        asset = Asset(
            asset_id,
            name,
            request.query_params.get("label", ""),
            request.headers.get("content-type", "application/octet-stream"),
            path,
            size,
        )
        release.assets[asset_id] = asset
        return _json(self._asset_json(repo, release, asset), 201)

    async def asset(self, request: Request) -> Response:
        need = "pull" if request.method == "GET" else "push"
        repo, _ = self._repo(request, need=need)
        for release in repo.releases.values():
            asset = release.assets.get(request.path_params["asset_id"])
            if asset is None:
                continue
            if request.method == "DELETE":
                del release.assets[asset.id]
                return Response(status_code=204)
            if request.method == "PATCH":
                body = await request.json()
                asset.name = body.get("name", asset.name)
                asset.label = body.get("label", asset.label)
            elif "application/octet-stream" in request.headers.get("accept", ""):
                return RedirectResponse(
                    f"{self.url}/_signed/{asset.id}?{self._signature(asset.id, 300)}",
                    status_code=302,
                )
            return _json(self._asset_json(repo, release, asset))
        raise _Error(404, "Not Found")

    async def browser_download(self, request: Request) -> Response:
        repo = self.repos.get((request.path_params["owner"], request.path_params["repo"]))
        for release in repo.releases.values() if repo else ():
            if release.tag_name == request.path_params["tag"] and not release.draft:
                for asset in release.assets.values():
                    if asset.name == request.path_params["name"]:
                        signed = f"{self.url}/_signed/{asset.id}?{self._signature(asset.id, 300)}"
                        return RedirectResponse(signed, status_code=302)
        return Response("Not Found", status_code=404)

    async def signed_download(self, request: Request) -> Response:
        asset_id = request.path_params["asset_id"]
        expires = int(request.query_params.get("expires", "0"))
        mac = hmac.new(self._signing_key, f"{asset_id}:{expires}".encode(), "sha256").hexdigest()
        if expires < time.time() or not hmac.compare_digest(
            mac, request.query_params.get("X-Amz-Signature", "")
        ):
            return Response(
                "<Error><Code>AccessDenied</Code></Error>",
                status_code=403,
                media_type="application/xml",
            )
        for repo in self.repos.values():
            for release in repo.releases.values():
                if asset_id in release.assets:
                    return Response(
                        release.assets[asset_id].data_path.read_bytes(),
                        media_type="application/octet-stream",
                    )
        return Response(status_code=404)


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data),
        status_code=status,
        headers=headers,
        media_type="application/json; charset=utf-8",
    )


def _validation(resource: str, code: str, field_name: str, message: str | None = None) -> Response:
    error: dict[str, Any] = {"resource": resource, "code": code, "field": field_name}
    if message:
        error["message"] = message
    return _json(
        {"message": "Validation Failed", "errors": [error], "documentation_url": DOCS}, 422
    )


def _validation_message(message: str) -> Response:
    return _json({"message": message, "documentation_url": DOCS}, 422)


def _blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
