"""The ``github`` backend: packages as GitHub releases, secured by personal access tokens.

Registered under the entry-point group ``pywharf.backends`` like any plugin, with the
commands ``pywharf github.init_pkg_repo`` and ``pywharf github.gen_gh_pages``.
"""

from pywharf_core.backend import BackendSpec

from .commands import gen_gh_pages, init_pkg_repo
from .storage import GitHubBackend, GitHubConfig, create

SPEC = BackendSpec(
    type="github",
    config_class=GitHubConfig,
    create=create,
    commands={"init_pkg_repo": init_pkg_repo, "gen_gh_pages": gen_gh_pages},
    admin_secret=True,
    client_secrets=False,  # the token's permission on the repository decides
    file_size_limit=2147483647,  # GitHub's largest release asset
)

__all__ = ["SPEC", "GitHubBackend", "GitHubConfig"]
