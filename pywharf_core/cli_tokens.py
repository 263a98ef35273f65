"""``pywharf token create|list|revoke INDEX_URL …``: a repository's API tokens, managed
over HTTP with its write secret (``client.call_tokens_api``)."""

from __future__ import annotations

import sys
from typing import Any

from .client import call_tokens_api, tokens_url
from .credentials import secret_of
from .errors import PywharfError


def token(
    action: str,
    index_url: str,
    permission: str = "upload",
    projects: str | None = None,
    expires_in: int | None = None,
    description: str = "",
    token_id: str | None = None,
    repo: str | None = None,
    secret: str | None = None,
    secret_env: str | None = None,
) -> None:
    """Create, list or revoke a repository's API tokens (with its write secret).

    pywharf token create INDEX_URL --permission upload --projects a,b --expires_in 86400
    prints the new token (shown this once); list prints one token per line; revoke
    needs --token_id.

    Args:
        action: create, list or revoke.
        index_url: the index, e.g. http://host:8888/r/REPO/simple/ (or …/simple/ with --repo).
        permission: read (list and download) or upload (also upload).
        projects: comma-separated projects an upload token may upload to (default: all).
        expires_in: seconds until the token expires (default: never).
        description: what the token is for, e.g. the CI job holding it.
        token_id: the id of the token to revoke (see list).
        repo: the repository name; not needed with an /r/REPO/simple/ URL.
        secret: the repository's write secret.
        secret_env: name of an environment variable holding the write secret instead.
    """
    url = tokens_url(str(index_url), None if repo is None else str(repo))
    write_secret = secret_of("secret", secret, secret_env)
    if action == "create":
        body: dict[str, Any] = {"permission": str(permission), "description": str(description)}
        if projects:
            names = projects if isinstance(projects, (list, tuple)) else str(projects).split(",")
            body["projects"] = [str(p).strip() for p in names if str(p).strip()]
        if expires_in is not None:
            body["expires_in"] = int(expires_in)
        made = call_tokens_api(url, "POST", write_secret, body)
        print(made["token"])
        scope = ", ".join(made["projects"]) if made["projects"] else "all projects"
        print(
            f"id {made['id']}: {made['permission']}, {scope}, expires {made['expires'] or 'never'}"
            " (the token is shown this once)",
            file=sys.stderr,
        )
    elif action == "list":
        for row in call_tokens_api(url, "GET", write_secret):
            scope = ",".join(row["projects"]) if row["projects"] else "*"
            print(
                f"{row['id']}  {row['permission']:<6}  {scope}  expires {row['expires'] or 'never'}"
                f"  last used {row['last_used'] or '-'}  {row['description']}"
            )
    elif action == "revoke":
        if not token_id:
            raise PywharfError("give --token_id (pywharf token list shows the ids)")
        call_tokens_api(url + str(token_id), "DELETE", write_secret)
        print(f"OK: token {token_id} revoked")
    else:
        raise PywharfError(f"unknown action {action!r}: create, list or revoke")
