"""The stats routes and the dashboard page of the live service.

``add_routes(app, db, campaigns)`` adds:

- ``GET /dashboard``: the page (``static/dashboard.html``), which draws its charts with uPlot,
  shipped in ``static/vendor`` (no CDN);
- ``GET /dashboard/static/{file}``: the files of the package's ``static`` directory, and only those;
- ``GET /v1/stats?label=L``: ``pushlang.runtime.stats.campaign_stats`` as JSON;
- ``GET /v1/stats/series?label=L&bucket=hour|day``: ``pushlang.runtime.stats.series`` as JSON.

The queries run in a worker thread on a connection of their own, so a long read never holds up
the event loop and never shares the writer's connection; SQLite's WAL lets it read while the
service writes (it sees what the service has committed).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from pushlang.runtime import stats

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain",
    ".md": "text/plain",
    ".license": "text/plain",
    "": "text/plain",  # LICENSE
}
TEXT = {"text/html", "text/javascript", "text/css", "application/json", "image/svg+xml", "text/plain"}

# The page loads scripts, styles and data from this origin only; uPlot styles its elements through
# the CSSOM, which the policy allows.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Labels = dict[str, tuple[str, ...]]
Names = dict[str, str]
# The campaigns as the service has them loaded: their labels, or their labels and display names.
CampaignsProvider = Callable[[], Labels | tuple[Labels, Names]]
# A path to the database, or a callable returning a connection to it.
Database = str | PathLike[str] | Callable[[], sqlite3.Connection]

T = TypeVar("T")


def static_files(root: Path = STATIC) -> dict[str, Path]:
    """The files the dashboard may serve, by their path relative to ``root`` (``vendor/uPlot.min.css``).

    The browser SDK (``sdk/``) is left out: the service serves it at ``/sdk/``, where a service
    worker gets its scope."""
    found = {}
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and parts[0] != "sdk" and not any(p.startswith(".") or p == "__pycache__" for p in parts):
            found["/".join(parts)] = path
    return found


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, db_path_or_connection_factory: Database,
               labels_provider: CampaignsProvider,
               authorize: Callable[[web.Request], bool] | None = None) -> None:
    """Add the dashboard and the stats API to ``app``.

    ``authorize``: when given, the stats API answers 401 to a request it refuses (the dashboard page
    itself is static and sends the token it was opened with, ``/dashboard#token=…``).

    ``db_path_or_connection_factory``: the service's database file, or a callable returning a
    connection to it (such as the activity log's own; the routes never close it nor use it from
    another thread). Each request reads on a short-lived connection of its own to that file, in a
    worker thread; only an in-memory database is read through the given connection itself.
    ``labels_provider``: a callable returning ``{campaign id: (labels...)}``, or that and
    ``{campaign id: display name}`` as a pair; it is called on each request, so reloaded campaigns
    show up at once.
    """
    files = static_files()

    def database() -> tuple[Path | None, sqlite3.Connection | None]:
        """The database file to read, or (for an in-memory database) the caller's connection."""
        source = db_path_or_connection_factory
        if not callable(source):
            return Path(source), None
        given = source()
        row = given.execute("PRAGMA database_list").fetchone()  # (seq, "main", file or "")
        return (Path(row[2]), None) if row and row[2] else (None, given)

    async def query(fn: Callable[[sqlite3.Connection], T]) -> T:
        path, given = database()
        if path is None:  # in memory: only the caller's connection sees it
            assert given is not None
            return fn(given)
        file: Path = path

        def run() -> T:
            db = sqlite3.connect(file, timeout=5.0)
            try:
                db.execute("PRAGMA query_only = ON")
                return fn(db)
            finally:
                db.close()

        return await asyncio.to_thread(run)

    def campaigns() -> tuple[Labels, Names]:
        found = labels_provider()
        if isinstance(found, tuple):
            labels, names = found
            return _labels(labels), dict(names)
        return _labels(found), {}

    def refused(request: web.Request) -> web.Response | None:
        if authorize is None or authorize(request):
            return None
        return web.json_response({"error": "a valid `Authorization: Bearer <token>` header is required; "
                                           "open the dashboard as /dashboard#token=<the API token>"},
                                 status=401, headers={"WWW-Authenticate": 'Bearer realm="pushlang"'})

    async def get_stats(request: web.Request) -> web.Response:
        if (refusal := refused(request)) is not None:
            return refusal
        labels, names = campaigns()
        label = request.query.get("label") or None
        return _json(await query(lambda db: stats.campaign_stats(db, labels, label=label, campaigns=names)))

    async def get_series(request: web.Request) -> web.Response:
        if (refusal := refused(request)) is not None:
            return refusal
        labels, names = campaigns()
        label = request.query.get("label") or None
        bucket = request.query.get("bucket", "hour")
        if bucket not in stats.BUCKETS:
            return _json({"error": f"bucket must be one of: {', '.join(stats.BUCKETS)}"}, status=400)
        return _json(await query(lambda db: stats.series(db, labels, label=label, bucket=bucket, campaigns=names)))

    async def get_dashboard(request: web.Request) -> web.Response:
        return _file("dashboard.html")

    async def get_static(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in files:
            raise web.HTTPNotFound(text=f"no such file: {name}\n")
        return _file(name)

    def _file(name: str) -> web.Response:
        kind = content_type(name)
        return web.Response(body=files[name].read_bytes(), content_type=kind,
                            charset="utf-8" if kind in TEXT else None,
                            headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})

    app.router.add_get("/dashboard", get_dashboard)
    app.router.add_get("/dashboard/static/{file:.+}", get_static)
    app.router.add_get("/v1/stats", get_stats)
    app.router.add_get("/v1/stats/series", get_series)


def _labels(labels: Mapping[str, Any]) -> Labels:
    return {str(cid): tuple(str(x) for x in names) for cid, names in labels.items()}
