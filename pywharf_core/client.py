"""Calls from the command line to a running pywharf server (yank, unyank, refresh,
tokens, delete, status, audit, promote)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .dists import normalize, parse_filename, same_version
from .errors import InvalidFilename, PywharfError

JSON_PAGE = "application/vnd.pypi.simple.v1+json"


class ServerError(PywharfError):
    """The server refused a request; carries its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the server answered {status}: {message}")
        self.status = status
        self.message = message


def call(
    url: str,
    method: str,
    username: str,
    secret: str,
    form: dict[str, str] | None = None,
    accept: str | None = None,
) -> str:
    """One request with basic auth; the answer's text, or ``ServerError``."""
    if not url.startswith(("http://", "https://")):
        raise PywharfError(f"the index URL must start with http:// or https://: {url}")
    token = base64.b64encode(f"{username}:{secret}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if accept is not None:
        headers["Accept"] = accept
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return str(response.read().decode("utf-8", "replace")).strip()
    except urllib.error.HTTPError as exc:
        message = exc.read().decode("utf-8", "replace").strip() or str(exc.reason)
        raise ServerError(exc.code, message) from None
    except urllib.error.URLError as exc:
        raise PywharfError(f"cannot reach {url}: {exc.reason}") from None


def set_yanked(
    index_url: str, filename: str, username: str, secret: str, reason: str | None
) -> str:
    """Yank (``reason`` given, may be empty) or unyank (``None``) ``filename`` on the index
    at ``index_url`` (``…/simple/`` or ``…/r/<repo>/simple/``); returns the server's text."""
    project = parse_filename(filename).project
    action = "unyank" if reason is None else "yank"
    url = f"{index_url.rstrip('/')}/{project}/{urllib.parse.quote(filename)}/{action}"
    return call(url, "POST", username, secret, form={"reason": reason or ""})


def refresh_upstream(index_url: str, project: str, username: str, secret: str) -> str:
    """Drop the cached upstream page of ``project`` on the index at ``index_url``."""
    url = f"{index_url.rstrip('/')}/{urllib.parse.quote(normalize(project))}/refresh"
    return call(url, "POST", username, secret, form={})


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


def project_files(index_url: str, project: str, username: str, secret: str) -> list[str]:
    """The filenames the index lists for ``project`` (its PEP 691 JSON page)."""
    url = f"{index_url.rstrip('/')}/{urllib.parse.quote(normalize(project))}/"
    try:
        page = json.loads(call(url, "GET", username, secret, accept=JSON_PAGE))
        return [str(item["filename"]) for item in page["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise PywharfError(f"{url} did not answer with a project page: {exc}") from None


def delete_files(
    index_url: str,
    project: str,
    version: str | None,
    filename: str | None,
    username: str,
    secret: str,
) -> list[str]:
    """Delete ``filename``, or every file of ``version`` of ``project``; returns the
    filenames deleted. Nothing matching is an error."""
    name = normalize(project)
    if filename is not None:
        chosen = [filename]
    else:
        chosen = []
        for listed in project_files(index_url, name, username, secret):
            try:
                if version is None or same_version(version, parse_filename(listed).version):
                    chosen.append(listed)
            except InvalidFilename:
                continue
        if not chosen:
            raise PywharfError(f"{project} has no files of version {version}")
    for each in chosen:
        url = f"{index_url.rstrip('/')}/{urllib.parse.quote(name)}/{urllib.parse.quote(each)}"
        call(url, "DELETE", username, secret)
    return chosen


def set_status(
    index_url: str, project: str, status: str, reason: str | None, username: str, secret: str
) -> str:
    """Set ``project``'s status (PEP 792); returns the server's text."""
    url = f"{index_url.rstrip('/')}/{urllib.parse.quote(normalize(project))}/status"
    return call(url, "POST", username, secret, form={"status": status, "reason": reason or ""})


def audit_lines(index_url: str, since: str | None, username: str, secret: str) -> str:
    """The audit log's JSON lines from ``since`` on (the server's default without)."""
    base = index_url.rstrip("/")
    if not base.endswith("/simple"):
        raise PywharfError(f"the index URL must end in /simple/: {index_url}")
    url = base.removesuffix("simple") + "audit/"
    if since:
        url += "?" + urllib.parse.urlencode({"since": since})
    return call(url, "GET", username, secret)


def promote(
    index_url: str,
    project: str,
    version: str,
    username: str,
    secret: str,
    to: str,
    to_secret: str,
) -> dict[str, list[str]]:
    """Copy a release to the repository ``to``; the server's answer (files copied and
    files the target already held)."""
    name = urllib.parse.quote(normalize(project))
    url = f"{index_url.rstrip('/')}/{name}/{urllib.parse.quote(version)}/promote"
    text = call(url, "POST", username, secret, form={"to": to, "to_secret": to_secret})
    try:
        answer = json.loads(text)
        return {key: [str(f) for f in answer[key]] for key in ("copied", "unchanged")}
    except (ValueError, KeyError, TypeError) as exc:
        raise PywharfError(f"{url} gave an unexpected answer: {exc}") from None


def project_page(index_url: str, project: str, username: str, secret: str) -> dict[str, Any] | None:
    """A project's PEP 691 page, or ``None`` when the index has no such project."""
    url = f"{index_url.rstrip('/')}/{urllib.parse.quote(normalize(project))}/"
    try:
        page = json.loads(call(url, "GET", username, secret, accept=JSON_PAGE))
    except ServerError as exc:
        if exc.status == 404:
            return None
        raise
    except ValueError as exc:
        raise PywharfError(f"{url} did not answer with a project page: {exc}") from None
    if not isinstance(page, dict):
        raise PywharfError(f"{url} did not answer with a project page")
    return page
