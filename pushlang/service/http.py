"""What the HTTP hosts share (`pushlang serve`, and its scale-out ingest): bearer tokens, body limits,
errors as JSON."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

MAX_BODY = 4 * 1024 * 1024
SDK = Path(__file__).resolve().parent / "static" / "sdk"
SDK_FILES = ("sw.js", "subscribe.js")  # what a shop's pages load: the service worker and the subscribe helper

log = logging.getLogger("pushlang.service")


def bearer_ok(request: web.Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def unauthorized() -> web.Response:
    return error(401, "a valid `Authorization: Bearer <token>` header is required",
                 headers={"WWW-Authenticate": 'Bearer realm="pushlang"'})


async def get_sdk(request: web.Request) -> web.StreamResponse:
    """``GET /sdk/{name}``: the browser SDK (the same files from every host that takes browser records)."""
    name = request.match_info["name"]
    path = SDK / name
    if name not in SDK_FILES or not path.is_file():
        return error(404, f"no SDK file {name}")
    headers = {"Content-Type": "application/javascript", "Service-Worker-Allowed": "/",
               "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return web.FileResponse(path, headers=headers)


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """aiohttp's errors as JSON, a body over the limit as a 413 that says what to do, and anything a
    handler did not expect as a JSON 500 (logged with its traceback), never aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"the body is over {MAX_BODY // (1024 * 1024)} MiB: send records in smaller batches")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason)
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, f"internal error ({type(exc).__name__}): it is logged; retry later")
