"""Calls from the command line to a running pywharf server (yank, unyank, refresh,
tokens)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .dists import normalize, parse_filename
from .errors import PywharfError


class ServerError(PywharfError):
    """The server refused a request; carries its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the server answered {status}: {message}")
        self.status = status
        self.message = message


def set_yanked(
    index_url: str, filename: str, username: str, secret: str, reason: str | None
) -> str:
    """Yank (``reason`` given, may be empty) or unyank (``None``) ``filename`` on the index
    at ``index_url`` (``…/simple/`` or ``…/r/<repo>/simple/``); returns the server's text."""
    project = parse_filename(filename).project
    action = "unyank" if reason is None else "yank"
    url = f"{index_url.rstrip('/')}/{project}/{urllib.parse.quote(filename)}/{action}"
    return _post(url, index_url, {"reason": reason or ""}, username, secret)


def refresh_upstream(index_url: str, project: str, username: str, secret: str) -> str:
    """Drop the cached upstream page of ``project`` on the index at ``index_url``."""
    url = f"{index_url.rstrip('/')}/{urllib.parse.quote(normalize(project))}/refresh"
    return _post(url, index_url, {}, username, secret)


def _post(url: str, index_url: str, fields: dict[str, str], username: str, secret: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise PywharfError(f"the index URL must start with http:// or https://: {index_url}")
    body = urllib.parse.urlencode(fields).encode()
    token = base64.b64encode(f"{username}:{secret}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return str(response.read().decode("utf-8", "replace")).strip()
    except urllib.error.HTTPError as exc:
        message = exc.read().decode("utf-8", "replace").strip() or str(exc.reason)
        raise ServerError(exc.code, message) from None
    except urllib.error.URLError as exc:
        raise PywharfError(f"cannot reach {index_url}: {exc.reason}") from None


def tokens_url(index_url: str, repo: str | None) -> str:
    """The tokens API of a repository: ``…/r/<repo>/tokens/``, from an index URL such as
    ``http://host:8888/r/<repo>/simple/`` or ``http://host:8888/simple/`` (with ``repo``)."""
    if not index_url.startswith(("http://", "https://")):
        raise PywharfError(f"the index URL must start with http:// or https://: {index_url}")
    base, marker, rest = index_url.partition("/r/")
    if marker:
        return f"{base}/r/{rest.split('/', 1)[0]}/tokens/"
    if not repo:
        raise PywharfError("give --repo (the repository name), or use an …/r/<repo>/simple/ URL")
    root = index_url.rstrip("/").removesuffix("/simple")
    return f"{root}/r/{urllib.parse.quote(repo)}/tokens/"


def call_tokens_api(url: str, method: str, secret: str, body: dict[str, Any] | None = None) -> Any:
    """One request to the tokens API with the write secret; the JSON answer (or None)."""
    token = base64.b64encode(f"__token__:{secret}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 (scheme checked by tokens_url)
        url, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        message = exc.read().decode("utf-8", "replace").strip() or str(exc.reason)
        raise ServerError(exc.code, message) from None
    except urllib.error.URLError as exc:
        raise PywharfError(f"cannot reach {url}: {exc.reason}") from None
    return json.loads(text) if text.strip() else None
