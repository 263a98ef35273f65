"""GitHub's side of trusted publishing, on loopback: an RSA key the tests generate, its
JWKS (a file, and a URL), ID tokens signed with it, and the Actions ID-token endpoint
(``ACTIONS_ID_TOKEN_REQUEST_URL`` / ``_TOKEN``) that uv reads."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://token.actions.githubusercontent.com"
REQUEST_TOKEN = "actions-request-t0ken"


class GitHubOidc:
    """Signs GitHub-shaped ID tokens; serves the JWKS and the ID-token endpoint."""

    def __init__(self, folder: Path, kid: str = "test-key-1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_path = folder / "jwks.json"
        self.write_jwks()
        #: Claims every ID token gets (the tests change them).
        self.claims: dict[str, Any] = {
            "repository": "acme/app",
            "repository_owner": "acme",
            "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/tags/v1",
            "environment": "pypi",
            "event_name": "push",
        }
        self.issued: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def write_jwks(self, *extra: dict[str, Any]) -> None:
        self.jwks_path.write_text(json.dumps(self.jwks(*extra)))

    def jwks(self, *extra: dict[str, Any]) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}, *extra]}

    def id_token(self, audience: str = "pywharf", **changes: Any) -> str:
        """A signed ID token; ``changes`` override claims (``None`` removes one), and
        ``_key``/``_kid``/``_alg`` the signing."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "sub": "repo:acme/app:environment:pypi",
            **self.claims,
        }
        key = changes.pop("_key", self.key)
        kid = changes.pop("_kid", self.kid)
        alg = changes.pop("_alg", "RS256")
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
        self.issued.append(token)
        return token

    # -- the Actions ID-token endpoint and the JWKS URL ---------------------------------------
    def start(self) -> GitHubOidc:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/jwks":
                    return self._json(200, stub.jwks())
                if url.path != "/id-token":
                    return self._json(404, {})
                scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
                if scheme.lower() != "bearer" or value != REQUEST_TOKEN:
                    return self._json(401, {"message": "bad request token"})
                audience = parse_qs(url.query).get("audience", ["pywharf"])[0]
                return self._json(200, {"value": stub.id_token(audience)})

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def actions_env(self) -> dict[str, str]:
        """What a GitHub Actions job with ``id-token: write`` has in its environment."""
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}/id-token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
        }

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
