"""The endpoints of API tokens and trusted publishing::

    POST   /r/<repo>/tokens/         create (write secret): JSON in, 201 JSON out, shown once
    GET    /r/<repo>/tokens/         list (write secret)
    DELETE /r/<repo>/tokens/<id>     revoke (write secret): 204
    GET    /_/oidc/audience          {"audience": …}
    POST   /_/oidc/mint-token        {"token": "<JWT>"} → {"success": true, "token": …}
    POST   /_/oidc/github/mint-token the same (PyPI has both)

Tokens are managed with the repository's write secret only: ``authorize`` refuses a
token for anything that needs ``Access.WRITE`` but an upload.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import audit
from .backend import Access
from .blocking import run_blocking
from .errors import BadRequest, PublishingRefused
from .oidc import Minted, TrustedPublishing
from .tokens import check_request, public_view
from .views import actor, authorize, refuse_cross_site

#: A token request or a mint request is a few hundred bytes.
MAX_JSON_BYTES = 64 * 1024


async def tokens(request: Request) -> Response:
    if request.method == "POST":
        refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    if request.method == "GET":
        listed = await run_blocking(repo.tokens.list)
        return JSONResponse(listed, headers={"Cache-Control": "no-store"})
    permission, projects, expires_in, description = check_request(
        await _json_body(request, BadRequest)
    )
    new = await run_blocking(repo.tokens.create, permission, projects, expires_in, description)
    body = {"token": new.token, **public_view(new.record)}
    await run_blocking(
        audit.append, repo, "token_created", actor(request), None, None, None, str(body["id"])
    )
    del body["last_used"]
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


async def revoke_token(request: Request) -> Response:
    refuse_cross_site(request)
    repo = await authorize(request, Access.WRITE)
    token_id = request.path_params["token_id"]
    await run_blocking(repo.tokens.revoke, token_id)
    await run_blocking(
        audit.append, repo, "token_revoked", actor(request), None, None, None, token_id
    )
    return Response(status_code=204)


async def audience(request: Request) -> Response:
    publishing: TrustedPublishing = request.app.state.trusted_publishing
    return JSONResponse({"audience": publishing.audience})


async def mint_token(request: Request) -> Response:
    publishing: TrustedPublishing = request.app.state.trusted_publishing
    body = await _json_body(request, None)
    if not isinstance(body, dict) or set(body) != {"token"}:
        raise PublishingRefused("invalid-payload", 'send JSON {"token": "<JWT>"}')
    minted: Minted = await run_blocking(
        publishing.mint, body["token"], list(request.app.state.repositories)
    )
    return JSONResponse(
        {"success": True, "token": minted.token.token, "expires": minted.expires},
        headers={"Cache-Control": "no-store"},
    )


async def publishing_refused(request: Request, exc: Exception) -> Response:
    """PyPI's shape of a refusal, which uv, pdm and gh-action-pypi-publish print."""
    assert isinstance(exc, PublishingRefused)
    return JSONResponse(
        {
            "message": f"Token request failed: {exc.description}",
            "errors": [{"code": exc.code, "description": exc.description}],
        },
        status_code=422,
    )


async def _json_body(request: Request, error: type[BadRequest] | None) -> Any:
    """The request's JSON body (bounded); a body that is no JSON is the caller's error."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            break
    problem = None
    if len(data) > MAX_JSON_BYTES:
        problem = f"the body is larger than {MAX_JSON_BYTES} bytes"
    else:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            problem = "the body is not JSON"
    if error is None:
        raise PublishingRefused("invalid-payload", problem)
    raise error(f"{problem[0].upper()}{problem[1:]}: send a JSON object")
