"""Trusted publishing (PyPI's OIDC flow): a GitHub Actions job trades its ID token for a
short-lived upload token, and no long-lived secret exists.

Checks, in order: the JWT's header (RS256, a key id), its signature against the issuer's
published keys (``KeySet``: cached, fetched again on an unknown key id at most once a
minute, the last good set kept when a fetch fails), ``iss``, ``aud``, ``exp``/``iat``/
``nbf`` with a small leeway, then the claims against the configured publishers
(``repository``, the workflow file in ``job_workflow_ref``, ``environment`` when one is
configured; ``pull_request_target`` refused), and last the ``jti``, used once: kept in
the matched repository's state document ``oidc-jti.json`` until the JWT expires, so a
replay is refused on every replica. Every refusal is ``PublishingRefused``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import TrustedPublisher
from .dists import normalize
from .errors import PublishingRefused
from .repository import Repository
from .tokens import NewToken

if TYPE_CHECKING:  # PyJWT and cryptography (9 MB): imported when a token is checked
    import jwt

log = logging.getLogger(__name__)

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_JWKS_URL = f"{GITHUB_ISSUER}/.well-known/jwks"
DEFAULT_AUDIENCE = "pywharf"
LEEWAY_SECONDS = 30
REFRESH_SECONDS = 60.0
#: A minted token's life (PyPI's too).
MINTED_TOKEN_SECONDS = 900
JTI_DOCUMENT = "oidc-jti.json"
MAX_JWT_BYTES = 16 * 1024
MAX_JWKS_BYTES = 1024 * 1024


class KeySet:
    """The issuer's signing keys, from a JWKS file or URL."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")  # monotonic; of the last attempt
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with id ``kid``; an unknown id fetches the set again (blocking), at
        most once a minute."""
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= REFRESH_SECONDS:
                self._fetched_at = time.monotonic()
                try:
                    self._keys = self._fetch()
                except Exception as exc:  # any failure: keep the last good set
                    log.warning("cannot read the OIDC keys from %s: %s", self.source, exc)
            return self._keys.get(kid)

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        import jwt

        if self.source.startswith(("http://", "https://")):
            request = urllib.request.Request(  # noqa: S310 (scheme checked above)
                self.source, headers={"Accept": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                text = response.read(MAX_JWKS_BYTES)
        else:
            text = Path(self.source).read_bytes()[:MAX_JWKS_BYTES]
        keys: dict[str, jwt.PyJWK] = {}
        for entry in json.loads(text).get("keys", []):
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this server cannot use
            if key.key_id:
                keys[key.key_id] = key
        return keys


@dataclass(frozen=True)
class Minted:
    repo: Repository
    token: NewToken
    expires: int


class TrustedPublishing:
    """Verifies ID tokens and mints upload tokens; one per server."""

    def __init__(self, audience: str, keys: KeySet) -> None:
        self.audience = audience
        self.keys = keys

    def mint(self, token: Any, repositories: Iterable[Repository]) -> Minted:
        """An upload token for the repository whose publisher ``token`` (a JWT) proves
        to be; ``PublishingRefused`` otherwise (blocking)."""
        claims = self.verify(token)
        repo, publisher = _match(claims, repositories)
        expires = int(min(time.time() + MINTED_TOKEN_SECONDS, float(claims["exp"])))
        _use_jti(repo, str(claims["jti"]), int(claims["exp"]))
        projects = sorted({normalize(p) for p in publisher.projects}) or None
        new = repo.tokens.create(
            "upload",
            projects,
            max(1, expires - int(time.time())),
            f"trusted publishing: {publisher.repository} {publisher.workflow}",
        )
        log.info(
            "%s: minted an upload token for %s (%s, jti %s)",
            repo.name,
            claims.get("repository"),
            claims.get("job_workflow_ref"),
            claims.get("jti"),
        )
        return Minted(repo, new, expires)

    def verify(self, token: Any) -> dict[str, Any]:
        """The claims of a valid ID token; ``PublishingRefused`` otherwise."""
        import jwt

        if not isinstance(token, str) or not token:
            raise PublishingRefused("invalid-payload", 'send JSON {"token": "<JWT>"}')
        if len(token) > MAX_JWT_BYTES:
            raise PublishingRefused("invalid-token", "the token is too long to be a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise PublishingRefused("invalid-token", f"malformed JWT: {exc}") from None
        if header.get("alg") != "RS256":
            raise PublishingRefused("invalid-token", "the JWT must be signed with RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise PublishingRefused("invalid-token", "the JWT names no key id (kid)")
        key = self.keys.key(kid)
        if key is None:
            raise PublishingRefused("invalid-token", f"unknown signing key id {kid[:80]!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=GITHUB_ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise PublishingRefused("invalid-token", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise PublishingRefused(
                "invalid-token", f"wrong audience: this server expects {self.audience!r}"
            ) from None
        except jwt.PyJWTError as exc:
            raise PublishingRefused("invalid-token", f"invalid token: {exc}") from None
        if not isinstance(claims["iat"], (int, float)) or claims["iat"] > (
            time.time() + LEEWAY_SECONDS
        ):
            raise PublishingRefused("invalid-token", "the token was issued in the future (iat)")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise PublishingRefused("invalid-token", "the token has no usable jti")
        return claims


def _match(
    claims: dict[str, Any], repositories: Iterable[Repository]
) -> tuple[Repository, TrustedPublisher]:
    if claims.get("event_name") == "pull_request_target":
        raise PublishingRefused(
            "invalid-publisher", "workflows run on pull_request_target may not publish"
        )
    matches = [
        (repo, publisher)
        for repo in repositories
        for publisher in repo.policy.trusted_publishers
        if _publisher_matches(publisher, claims)
    ]
    if not matches:
        raise PublishingRefused(
            "invalid-publisher",
            f"no trusted publisher matches repository {str(claims.get('repository'))[:100]!r}, "
            f"workflow {str(claims.get('job_workflow_ref'))[:200]!r}, "
            f"environment {str(claims.get('environment'))[:100]!r}",
        )
    if len({repo.name for repo, _ in matches}) > 1:
        raise PublishingRefused(
            "invalid-publisher",
            "this publisher is trusted by more than one repository; configure it in one",
        )
    return matches[0]


def _publisher_matches(publisher: TrustedPublisher, claims: dict[str, Any]) -> bool:
    repository = claims.get("repository")
    workflow_ref = claims.get("job_workflow_ref")
    if not isinstance(repository, str) or not isinstance(workflow_ref, str):
        return False
    # GitHub's owner and repository names are case-insensitive; the path is not.
    if repository.lower() != publisher.repository.lower():
        return False
    path, at, _ref = workflow_ref.rpartition("@")
    expected = f"{publisher.repository}/.github/workflows/{publisher.workflow}"
    owner_repo, _, workflow_path = path.partition("/.github/workflows/")
    if not at or owner_repo.lower() != publisher.repository.lower():
        return False
    if f"{publisher.repository}/.github/workflows/{workflow_path}" != expected:
        return False
    return publisher.environment is None or claims.get("environment") == publisher.environment


def _use_jti(repo: Repository, jti: str, expires: int) -> None:
    """Record ``jti`` as used (until ``expires``), or refuse a replay (blocking)."""

    def add(data: bytes | None) -> bytes:
        now = time.time()
        used: dict[str, int] = json.loads(data).get("used", {}) if data else {}
        if jti in used:
            raise PublishingRefused("invalid-token", "this token was already used (jti)")
        kept = {k: v for k, v in used.items() if v + LEEWAY_SECONDS > now}
        kept[jti] = expires
        return json.dumps({"version": 1, "used": kept}).encode("utf-8")

    repo.state.update(JTI_DOCUMENT, add)
