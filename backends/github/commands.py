"""The github backend's commands: ``pywharf github.init_pkg_repo`` and
``pywharf github.gen_gh_pages``."""

from __future__ import annotations

import os
import re
import time
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pywharf_core import __version__
from pywharf_core.backend import BackendContext
from pywharf_core.errors import PywharfError
from pywharf_core.indexfile import IndexFile, dump_index, load_index
from pywharf_core.simple import API_VERSION

from .storage import GitHubConfig, client, create, github_errors

UPDATE_INDEX_WORKFLOW = ".github/workflows/pywharf-update-index.yml"
GH_PAGES_WORKFLOW = ".github/workflows/pywharf-gh-pages.yml"


def workflow_text(filename: str, values: dict[str, str]) -> str:
    """A shipped workflow file with the values of its ``env:`` entries set."""
    text = files("pywharf_workflows").joinpath(filename).read_text(encoding="utf-8")
    for key, value in values.items():
        text = _set_env_value(text, key, value, filename)
    return text


def _set_env_value(text: str, key: str, value: str, filename: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return f'{match.group(1)}"{value}"'

    text, count = re.subn(rf'^(\s*{key}: )".*"$', replace, text, flags=re.MULTILINE)
    if count != 1:
        raise PywharfError(f"workflow {filename} has no single {key} entry")
    return text


def _token(token: str | None, token_env: str | None) -> str:
    if token_env:
        value = os.environ.get(str(token_env))
        if not value:
            raise PywharfError(f"environment variable {token_env!r} is not set")
        return value
    if not token:
        raise PywharfError("give --token (or --token_env)")
    return str(token)


def init_pkg_repo(
    name: str,
    owner: str,
    repo: str,
    token: str | None = None,
    token_env: str | None = None,
    branch: str = "master",
    index_filename: str = "index.toml",
    pywharf_version: str | None = None,
    enable_gh_pages: bool = False,
    base_url: str = "https://api.github.com",
) -> None:
    """Create a private GitHub repository to hold a package index, ready to use.

    Args:
        name: the pywharf repository name (the config table, the basic-auth username).
        owner: the user or organisation that owns the new GitHub repository.
        repo: the new GitHub repository's name.
        token: a GitHub token allowed to create repositories there.
        token_env: name of an environment variable holding the token instead.
        branch: the branch that holds the index file.
        index_filename: the index file's path on that branch.
        pywharf_version: the pywharf version the workflows install (default: this one).
        enable_gh_pages: also publish a static PEP 503 site with GitHub Pages.
        base_url: the GitHub API (GitHub Enterprise Server: https://HOST/api/v3).
    """
    github = client(_token(token, token_env), str(base_url))
    owner, repo, branch = str(owner), str(repo), str(branch)
    with github_errors("the authenticated user"):
        me = github.get_user()
        login = me.login
    with github_errors(f"{owner}/{repo}"):
        if owner == login:
            created = me.create_repo(repo, private=True, auto_init=True)
        else:
            created = github.get_organization(owner).create_repo(repo, private=True, auto_init=True)
        default_branch = created.default_branch
        if branch != default_branch:
            head = created.get_git_ref(f"heads/{default_branch}")
            created.create_git_ref(f"refs/heads/{branch}", head.object.sha)
    values = {
        "PYWHARF_VERSION": str(pywharf_version or __version__),
        "PYWHARF_REPO_NAME": str(name),
        "PYWHARF_INDEX_BRANCH": branch,
        "PYWHARF_INDEX_FILENAME": str(index_filename),
    }
    with github_errors(f"{owner}/{repo} contents"):
        # Workflows run from the default branch.
        created.create_file(
            UPDATE_INDEX_WORKFLOW,
            "pywharf: update the index on releases",
            workflow_text("update-index.yml", values),
            branch=default_branch,
        )
        if enable_gh_pages:
            created.create_file(
                GH_PAGES_WORKFLOW,
                "pywharf: publish the index on GitHub Pages",
                workflow_text("gh-pages.yml", values),
                branch=default_branch,
            )
        created.create_file(
            str(index_filename),
            "pywharf: an empty index",
            dump_index(IndexFile(time.time(), ())),
            branch=branch,
        )
    if enable_gh_pages:
        with github_errors(f"{owner}/{repo} pages"):
            created._requester.requestJsonAndCheck(  # PyGithub has no call for this one
                "POST", f"{created.url}/pages", input={"build_type": "workflow"}
            )
    print(f"Created {owner}/{repo}. Add to the server's config:\n")
    print(f'[{name}]\ntype = "github"\nowner = "{owner}"\nrepo = "{repo}"\nbranch = "{branch}"')
    if index_filename != "index.toml":
        print(f'index_filename = "{index_filename}"')
    if base_url != "https://api.github.com":
        print(f'base_url = "{base_url}"')
    print("\nand to its admin secret (a token with write access; here from the environment):\n")
    print(f'[{name}]\ntype = "github"\nenv = "PYWHARF_GITHUB_TOKEN"')


def gen_gh_pages(
    name: str,
    owner: str,
    repo: str,
    output_folder: str,
    token: str | None = None,
    token_env: str | None = None,
    branch: str = "master",
    index_filename: str = "index.toml",
    base_url: str = "https://api.github.com",
) -> None:
    """Write a static PEP 503 site of the repository's index into OUTPUT_FOLDER.

    Args:
        name: the pywharf repository name.
        owner: the GitHub repository's owner.
        repo: the GitHub repository's name.
        output_folder: where to write the site (index.html, <project>/index.html).
        token: a GitHub token that can read the repository.
        token_env: name of an environment variable holding the token instead.
        branch: the branch that holds the index file.
        index_filename: the index file's path on that branch.
        base_url: the GitHub API.
    """
    config = GitHubConfig(
        owner=str(owner),
        repo=str(repo),
        branch=str(branch),
        index_filename=str(index_filename),
        base_url=str(base_url),
    )
    backend = create(
        BackendContext(str(name), Path("."), _token(token, token_env), serving=False), config
    )
    current = backend.read_index()
    records = load_index(current[0]).records if current is not None else ()
    downloads = _download_urls(backend.repo)
    out = Path(str(output_folder))
    out.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[Any]] = {}
    for record in sorted(records, key=lambda r: r.filename):
        projects.setdefault(record.project, []).append(record)
    head = (
        f'<!DOCTYPE html>\n<html>\n<head>\n<meta name="pypi:repository-version" '
        f'content="{API_VERSION}">\n<title>{{title}}</title>\n</head>\n<body>\n'
    )
    links = "".join(f'<a href="{quote(p)}/">{escape(p)}</a><br>\n' for p in projects)
    (out / "index.html").write_text(
        head.format(title="Simple index") + links + "</body>\n</html>\n"
    )
    for project, items in projects.items():
        lines = []
        for record in items:
            url = downloads.get(record.filename)
            if url is None:
                continue
            attrs = f'href="{escape(url)}#sha256={record.sha256}"'
            if record.requires_python:
                attrs += f' data-requires-python="{escape(record.requires_python)}"'
            if record.yanked is not None:
                attrs += f' data-yanked="{escape(record.yanked)}"'
            lines.append(f"<a {attrs}>{escape(record.filename)}</a><br>\n")
        folder = out / project
        folder.mkdir(exist_ok=True)
        title = f"Links for {escape(project)}"
        (folder / "index.html").write_text(
            head.format(title=title) + f"<h1>{title}</h1>\n" + "".join(lines) + "</body>\n</html>\n"
        )
    print(f"gen_gh_pages {name}: {len(projects)} projects, {len(records)} files -> {out}")


def _download_urls(repository: Any) -> dict[str, str]:
    with github_errors("the releases"):
        return {
            asset.name: asset.browser_download_url
            for release in repository.get_releases()
            if not release.draft
            for asset in release.assets
            if asset.name == release.tag_name
        }
