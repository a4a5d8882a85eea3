"""What the HTTP hosts share (`pushlang serve`, and its scale-out ingest): bearer tokens, body limits,
errors as JSON."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

MAX_BODY = 4 * 1024 * 1024


def bearer_ok(request: web.Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def unauthorized() -> web.Response:
    return error(401, "a valid `Authorization: Bearer <token>` header is required",
                 headers={"WWW-Authenticate": 'Bearer realm="pushlang"'})


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """aiohttp's errors as JSON, and a body over the limit as a 413 that says what to do."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"the body is over {MAX_BODY // (1024 * 1024)} MiB: send records in smaller batches")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason)
        raise
