"""The client commands: they change or read a repository on a running server over
HTTP (``client.py`` makes the requests)::

    pywharf yank|unyank INDEX_URL FILENAME …
    pywharf refresh INDEX_URL PROJECT …   (drop a cached upstream page)
    pywharf delete INDEX_URL PROJECT [VERSION] [--filename F] …
    pywharf status INDEX_URL PROJECT active|archived|quarantined|deprecated [--reason …]
    pywharf audit INDEX_URL [--since …] …
    pywharf promote INDEX_URL PROJECT VERSION --from REPO --to REPO …
    pywharf list INDEX_URL PROJECT … / pywharf exists INDEX_URL PROJECT[==VERSION] …

Each takes ``--repo`` and ``--secret``/``--secret_env``, or ``-r NAME`` (``credentials``).
"""

from __future__ import annotations

import sys
from typing import Any

from packaging.utils import canonicalize_version

from .client import audit_lines, delete_files, refresh_upstream, set_yanked
from .client import project_page as fetch_project_page
from .client import promote as promote_release
from .client import set_status as set_project_status
from .credentials import login, secret_of
from .dists import parse_filename
from .errors import PywharfError
from .simple import sort_versions


def yank(
    index_url: str,
    filename: str,
    reason: str = "",
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Yank a file (PEP 592): installers skip it unless its version is pinned with ==.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        filename: the file to yank, e.g. mypkg-1.0-py3-none-any.whl
        reason: shown to users of the yanked file.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    print(_set_yanked(index_url, filename, str(reason), repo, secret, secret_env))


def unyank(
    index_url: str,
    filename: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Undo a yank.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        filename: the file to unyank.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    print(_set_yanked(index_url, filename, None, repo, secret, secret_env))


def refresh(
    index_url: str,
    project: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Drop a project's cached upstream page (a repository with upstream_url): the next
    request asks the upstream index again.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project whose upstream page to drop.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url, username, password = login(index_url, repo, secret, secret_env)
    print(refresh_upstream(url, str(project), username, password))


def _set_yanked(
    index_url: Any, filename: Any, reason: str | None, repo: Any, secret: Any, secret_env: Any
) -> str:
    url, username, password = login(index_url, repo, secret, secret_env)
    return set_yanked(url, str(filename), username, password, reason)


def delete(
    index_url: str,
    project: str,
    version: str | None = None,
    filename: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Delete files for good: every file of VERSION (each one named), or --filename.

    Installers can no longer get them, and by default the filename cannot be uploaded
    again with other bytes (allow_filename_reuse). Prefer yank for a release people use.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        version: delete every file of this version.
        filename: delete this one file instead.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    if (version is None) == (filename is None):
        raise PywharfError("give a VERSION or --filename (exactly one)")
    url, username, password = login(index_url, repo, secret, secret_env)
    deleted = delete_files(
        url,
        str(project),
        None if version is None else str(version),
        None if filename is None else str(filename),
        username,
        password,
    )
    for name in deleted:
        print(f"deleted {name}")


def status(
    index_url: str,
    project: str,
    status: str,
    reason: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Set a project's status (PEP 792): active, archived, quarantined or deprecated.

    archived and quarantined refuse uploads; quarantined also offers no files.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        status: active, archived, quarantined or deprecated.
        reason: shown with the status on the project's pages.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url, username, password = login(index_url, repo, secret, secret_env)
    text = None if reason is None else str(reason)
    print(set_project_status(url, str(project), str(status), text, username, password))


def audit(
    index_url: str,
    since: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Print a repository's audit log: one JSON record per line, oldest first.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        since: an ISO 8601 date or time (UTC unless it says), or seconds since the epoch;
            default: the last week.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url, username, password = login(index_url, repo, secret, secret_env)
    text = audit_lines(url, None if since is None else str(since), username, password)
    if text:
        print(text)


def promote(
    index_url: str,
    project: str,
    version: str,
    to: str,
    source: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
    to_secret: str | None = None,
    to_secret_env: str | None = None,
) -> None:
    """Copy a release to another repository on the server (same bytes, same hashes).

    Files the target already holds with the same bytes are left alone; one it holds with
    other bytes stops the promotion before anything is copied.

    Args:
        index_url: the source index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        version: the version whose files are copied.
        to: the target repository's name.
        source: the source repository's name (also --from); not needed with an /r/REPO/simple/ URL.
        secret: the source's read or write secret.
        secret_env: name of an environment variable holding the source's secret instead.
        to_secret: the target's write secret.
        to_secret_env: name of an environment variable holding the target's secret instead.
    """
    url, username, password = login(index_url, source, secret, secret_env)
    target_secret = secret_of("to_secret", to_secret, to_secret_env)
    answer = promote_release(
        url, str(project), str(version), username, password, str(to), target_secret
    )
    for name in answer["copied"]:
        print(f"copied {name}")
    for name in answer["unchanged"]:
        print(f"already there: {name}")


def list_files(
    index_url: str,
    project: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Print a project's versions, newest first, each with its files (and yanks).

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        project: the project name.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's read or write secret.
        secret_env: name of an environment variable holding the secret instead.
    """
    url, username, password = login(index_url, repo, secret, secret_env)
    page = fetch_project_page(url, str(project), username, password)
    if page is None:
        raise PywharfError(f"{project} is not in this repository")
    by_version: dict[str, list[str]] = {}
    for item in page.get("files", []):
        filename = str(item.get("filename", ""))
        try:
            version = str(parse_filename(filename).version)
        except PywharfError:
            continue
        yanked = item.get("yanked", False)
        note = (
            ""
            if yanked is False
            else f"  (yanked{': ' + yanked if isinstance(yanked, str) and yanked else ''})"
        )
        by_version.setdefault(version, []).append(filename + note)
    status = page.get("project-status", {}).get("status", "active")
    if status != "active":
        print(f"{page.get('name', project)}: {status}")
    for version in reversed(sort_versions(by_version)):
        print(version)
        for line in by_version[version]:
            print(f"  {line}")


def exists(
    index_url: str,
    requirement: str,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Exit 0 when the index offers PROJECT (or PROJECT==VERSION), 1 when not.

    Args:
        index_url: the index, e.g. http://host:8888/simple/ or http://host:8888/r/REPO/simple/
        requirement: PROJECT or PROJECT==VERSION.
        repo: the repository name (the username); not needed with an /r/REPO/simple/ URL.
        secret: the repository's read or write secret.
        secret_env: name of an environment variable holding the secret instead.
    """
    project, _, version = str(requirement).partition("==")
    url, username, password = login(index_url, repo, secret, secret_env)
    page = fetch_project_page(url, project.strip(), username, password)
    files = [str(item.get("filename", "")) for item in (page or {}).get("files", [])]
    found = bool(files)
    if found and version.strip():
        found = any(_file_version(f) == canonicalize_version(version.strip()) for f in files)
    sys.exit(0 if found else 1)


def _file_version(filename: str) -> str | None:
    try:
        return canonicalize_version(str(parse_filename(filename).version))
    except PywharfError:
        return None
