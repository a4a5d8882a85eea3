"""`pushlang serve`: the engine on the wall clock with the SQLite store, over HTTP (aiohttp).

- ``POST /v1/records`` (bearer token): JSON Lines or a JSON array of SPEC §9.1 records; each bad
  record is reported with its index and reason, the valid ones are accepted — and committed to the
  store before the answer, so an accepted record survives a crash.
- ``POST /v1/browser/records`` (no token, for the service worker and subscribe.js): only
  subscriptions and ``Push Viewed`` / ``Push Clicked`` of a known send.
- ``GET /v1/campaigns``, ``POST /v1/reload`` (bearer token; and SIGHUP), ``GET /healthz`` (no token):
  a reload takes effect only when the files compile without errors; otherwise the diagnostics are
  returned and the running campaigns go on.
- ``GET /v1/stats``, ``GET /v1/stats/series`` (bearer token) and ``GET /dashboard``
  (``pushlang.service.dashboard``; the page sends the token it was opened with, ``#token=…``).
- Sends go through an outbox kept in the store: a send is written ``pending`` with the decision,
  marked ``sending`` just before the push goes out, and removed once it has a delivery record.
  After a crash, ``pending`` sends are delivered and ``sending`` ones are recorded as failed
  (``interrupted``) — so a restart never delivers the same ``send_id`` twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from pushlang import aio, plan
from pushlang.compiler import compile_paths
from pushlang.config import Config
from pushlang.diagnostics.render import render_json
from pushlang.dispatch.base import Delivery
from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher, delivery_record
from pushlang.runtime.engine import Engine, Output, SendJob
from pushlang.runtime.instants import US, iso
from pushlang.runtime.records import Event, InvalidRecord, Record, Subscribe, Unsubscribe, decode_record
from pushlang.runtime.render import Rendered
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.service.activity import ActivityLog

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 4 * 1024 * 1024
OUTBOX = "outbox:"
BROWSER_EVENTS = {"Push Viewed": "viewed", "Push Clicked": "clicked"}
# The browser endpoint takes no token and only subscriptions, views and clicks: any origin may post.
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
         "Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "86400"}


def plan_hash(campaign: plan.Campaign) -> str:
    return hashlib.sha256(msgspec.json.encode(campaign)).hexdigest()[:16]


class LiveService:
    def __init__(self, paths: list[str], *, config_path: str | None = None, store_path: str = "pushlang.db",
                 token: str | None = None, tick: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.paths = paths
        self.config_path = config_path
        result = compile_paths(paths, config_path=config_path)
        if result.plan is None:
            raise ValueError("the campaigns do not compile; run `pushlang lint` for the diagnostics")
        self.plan: plan.Plan = result.plan
        self.config: Config = result.config
        self.token = token or os.environ.get("PUSHLANG_API_TOKEN") or self.config.raw.get("server", {}).get("token")
        if not self.token:
            raise ValueError("no API token: set PUSHLANG_API_TOKEN (or [server] token in pushlang.toml)")
        self.store = SqliteStore(store_path)
        self.activity = ActivityLog(store_path)
        self.settings = DeliverySettings.from_config(self.config)
        self.tick, self.clock = tick, clock
        self.halts: list[str] = []
        self._jobs: list[SendJob] = []
        self._lock = asyncio.Lock()  # the engine and the store: one request or tick at a time
        self._wake = asyncio.Event()  # sends are waiting in the outbox
        self.engine = self._engine(self.plan)
        self.dispatcher: Dispatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _engine(self, compiled: plan.Plan) -> Engine:
        return Engine(compiled, self.store, self._output, on_send=self._send)

    # ---- the engine's outputs ------------------------------------------------------------------

    def _output(self, out: Output) -> None:
        self.activity.record(out)

    def _send(self, job: SendJob) -> None:
        """A send decision: into the outbox (committed with the decision), delivered in the background."""
        self.store.set_meta(OUTBOX + job.send_id, {
            "state": "pending", "at": job.at, "campaign": job.campaign.id, "user": job.user,
            "title": job.rendered.title, "body": job.rendered.body, "url": job.rendered.url,
            "image": job.rendered.image, "icon": job.rendered.icon,
            "buttons": [list(b) for b in job.rendered.buttons], "targets": [s.key for s in job.targets]})
        self._jobs.append(job)
        self._wake.set()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.settings.problems():
            self.dispatcher = Dispatcher(self.settings, self.plan.settings.default_ttl, on_halt=self.halts.append)
            await self.dispatcher.__aenter__()
        self._recover()
        self._tasks = [asyncio.create_task(self._tick_forever()), asyncio.create_task(self._deliver_forever())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.dispatcher is not None:
            await self.dispatcher.__aexit__(None, None, None)
        self.store.close()
        self.activity.close()

    def _recover(self) -> None:
        """Sends a crash left in the outbox: pending ones go out now, interrupted ones are failed."""
        for key, entry in self.store.meta_items(OUTBOX):
            send_id = key[len(OUTBOX):]
            campaign = self.plan.campaign(entry["campaign"])
            state = self.store.get(entry["user"])
            if entry["state"] == "sending" or campaign is None or state is None:
                self.activity.record(Output(iso(entry["at"]), entry["campaign"], entry["user"], "failed",
                                            "interrupted", send_id))
                self.store.set_meta(key, None)
                continue
            rendered = Rendered(entry["title"], entry["body"], entry["url"], entry["image"], entry["icon"],
                                tuple((b[0], b[1]) for b in entry["buttons"]))
            targets = tuple(state.subscriptions[k] for k in entry["targets"] if k in state.subscriptions)
            self._jobs.append(SendJob(entry["at"], campaign, entry["user"], send_id, rendered, targets))
        self._wake.set()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            async with self._lock:
                self.engine.advance(int(self.clock() * US), inclusive=True)
                self._commit()

    async def _deliver_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._deliver()

    def _commit(self) -> None:
        self.store.commit()
        self.activity.commit()

    async def _deliver(self) -> None:
        """The outbox's sends: marked `sending` (committed), delivered without holding the engine,
        then their delivery records written and the outbox entries removed (committed)."""
        async with self._lock:
            jobs, self._jobs = self._jobs, []
            if not jobs:
                return
            for job in jobs:
                entry = self.store.meta(OUTBOX + job.send_id)
                self.store.set_meta(OUTBOX + job.send_id, {**entry, "state": "sending"})
            self._commit()
        if self.dispatcher is None:
            results = [(job, sub, Delivery(False, None, "delivery_not_configured", 0))
                       for job in jobs for sub in job.targets]
        else:
            results = await self.dispatcher.deliver(jobs)
        async with self._lock:
            for job, sub, result in results:
                if result.deactivate and (state := self.store.get(job.user)) is not None:
                    self.store.set_active(state, sub.key, False)
                self.activity.record(delivery_record(job, sub, result))
            for job in jobs:
                self.store.set_meta(OUTBOX + job.send_id, None)
            self._commit()

    # ---- HTTP -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors])
        app.router.add_post("/v1/records", self.post_records)
        app.router.add_post("/v1/browser/records", self.post_browser_records)
        app.router.add_route("OPTIONS", "/v1/browser/records", self.browser_preflight)
        app.router.add_get("/v1/campaigns", self.get_campaigns)
        app.router.add_post("/v1/reload", self.post_reload)
        app.router.add_get("/healthz", self.get_health)
        app.router.add_get("/sdk/demo", self.get_demo)
        app.router.add_get("/sdk/{name}", self.get_sdk)
        try:
            from pushlang.service.dashboard import add_routes
        except ImportError:  # the dashboard is optional in a minimal install
            pass
        else:
            add_routes(app, lambda: self.activity.db, self._labels, authorize=self._authorized)
        app.on_startup.append(lambda _: self.start())
        app.on_cleanup.append(lambda _: self.stop())
        return app

    def _labels(self) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
        return ({c.id: c.labels for c in self.plan.campaigns}, {c.id: c.name for c in self.plan.campaigns})

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        assert self.token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    async def post_records(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "a valid `Authorization: Bearer <token>` header is required",
                          headers={"WWW-Authenticate": 'Bearer realm="pushlang"'})
        records, rejected = _parse_records(await request.read())
        async with self._lock:
            for record in records:
                self.engine.feed(record)
                if isinstance(record, Event) and record.name in BROWSER_EVENTS:
                    self._interaction(record)
            self._commit()  # accepted means durable: committed before the answer
        self._wake.set()
        status = 200 if records or not rejected else 400
        return web.json_response({"accepted": len(records), "rejected": rejected}, status=status)

    async def browser_preflight(self, request: web.Request) -> web.Response:
        """CORS: a shop's pages (another origin than the service) may post browser records."""
        return web.Response(status=204, headers=_CORS)

    async def post_browser_records(self, request: web.Request) -> web.Response:
        response = await self._browser_records(request)
        response.headers.update(_CORS)
        return response

    async def _browser_records(self, request: web.Request) -> web.Response:
        records, rejected = _parse_records(await request.read())
        allowed: list[Record] = []
        for index, record in enumerate(records):
            if isinstance(record, (Subscribe, Unsubscribe)):
                allowed.append(record)
            elif isinstance(record, Event) and record.name in BROWSER_EVENTS:
                send_id = record.props.get("send_id")
                if not isinstance(send_id, str) or self.activity.campaign_of(send_id) is None:
                    rejected.append({"index": index, "reason": f"`{record.name}` for an unknown send_id"})
                else:
                    allowed.append(record)
            else:
                rejected.append({"index": index, "reason": "browsers may only send subscriptions and "
                                                           "Push Viewed / Push Clicked events"})
        async with self._lock:
            for record in allowed:
                self.engine.feed(record)
                if isinstance(record, Event):
                    self._interaction(record)
            self._commit()
        status = 200 if allowed or not rejected else 400
        return web.json_response({"accepted": len(allowed), "rejected": rejected}, status=status)

    def _interaction(self, event: Event) -> None:
        send_id = str(event.props.get("send_id", ""))
        campaign = event.props.get("campaign") or self.activity.campaign_of(send_id) or ""
        self.activity.interaction(BROWSER_EVENTS[event.name], iso(event.ts), str(campaign), event.user, send_id)

    async def get_campaigns(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "a valid `Authorization: Bearer <token>` header is required",
                          headers={"WWW-Authenticate": 'Bearer realm="pushlang"'})
        return web.json_response([{"id": c.id, "name": c.name, "labels": list(c.labels),
                                   "trigger": type(c.trigger).__name__, "plan_hash": plan_hash(c)}
                                  for c in self.plan.campaigns])

    async def get_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "campaigns": len(self.plan.campaigns), "clock": iso(self.engine.clock),
                                  "delivery": "live" if self.dispatcher else "not configured",
                                  "halted": self.halts})

    async def post_reload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "a valid `Authorization: Bearer <token>` header is required")
        return await self.reload()

    async def reload(self) -> web.Response:
        result = compile_paths(self.paths, config_path=self.config_path)
        if result.plan is None:
            body = msgspec.json.decode(render_json(result.diagnostics))
            return web.json_response({"reloaded": False, "diagnostics": body}, status=422)
        async with self._lock:
            self.plan = result.plan
            self.engine = self._engine(result.plan)
        return web.json_response({"reloaded": True, "campaigns": [c.id for c in result.plan.campaigns]})

    async def get_demo(self, request: web.Request) -> web.Response:
        """A page to try the SDK with: registers the worker for ?user= and subscribes on a click."""
        key = ""
        if self.settings.vapid_key_file and Path(self.settings.vapid_key_file).is_file():
            from pushlang.dispatch.keys import load_public

            key = load_public(Path(self.settings.vapid_key_file))  # the public half only
        html = (STATIC / "sdk" / "demo.html").read_text(encoding="utf-8")
        html = html.replace('<html lang="en">', f'<html lang="en" data-vapid-key="{key}">', 1)
        return web.Response(text=html, content_type="text/html")

    async def get_sdk(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / "sdk" / name
        if name not in ("sw.js", "subscribe.js") or not path.is_file():
            return _error(404, f"no SDK file {name}")
        headers = {"Content-Type": "application/javascript", "Service-Worker-Allowed": "/"}
        return web.FileResponse(path, headers=headers)


def _items(body: bytes) -> list[bytes]:
    """The records of a body, one JSON text each: JSON Lines or a JSON array (ValueError if broken)."""
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            return [msgspec.json.encode(x) for x in msgspec.json.decode(stripped)]
        except msgspec.DecodeError as exc:
            raise ValueError(f"the body is not valid JSON: {exc}") from None
    return [line for line in body.splitlines() if line.strip()]


def _parse_records(body: bytes) -> tuple[list[Record], list[dict[str, Any]]]:
    """JSON Lines or a JSON array; the index of a bad record is its 0-based position."""
    try:
        items = _items(body)
    except ValueError as exc:
        return [], [{"index": None, "reason": str(exc)}]
    records: list[Record] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            records.append(decode_record(item))
        except InvalidRecord as exc:
            rejected.append({"index": index, "reason": str(exc)})
    return records, rejected


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def _json_errors(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"the body is over {MAX_BODY // (1024 * 1024)} MiB: send records in smaller batches")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise


class StreamIngest:
    """`pushlang serve --redis URL`: the ingest API of scale-out. Records go to the partition
    streams (SPEC §9.1 validation, per-record errors), where `pushlang worker` processes pick them up;
    accepted means the XADD succeeded."""

    def __init__(self, redis_url: str, partitions: int, token: str | None = None) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.partitions = partitions
        self.token = token or os.environ.get("PUSHLANG_API_TOKEN")
        if not self.token:
            raise ValueError("no API token: set PUSHLANG_API_TOKEN")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors])
        app.router.add_post("/v1/records", self.post_records)
        app.router.add_get("/healthz", self.get_health)
        return app

    async def post_records(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        assert self.token is not None
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return _error(401, "a valid `Authorization: Bearer <token>` header is required")
        try:
            items = _items(await request.read())
        except ValueError as exc:
            return web.json_response({"accepted": 0, "rejected": [{"index": None, "reason": str(exc)}]}, status=400)
        from pushlang.scaleout import ingest

        accepted, rejects = await asyncio.to_thread(ingest, self.client, items, self.partitions)
        rejected = [{"index": r.line - 1, "reason": r.reason} for r in rejects]
        return web.json_response({"accepted": accepted, "rejected": rejected},
                                 status=200 if accepted or not rejected else 400)

    async def get_health(self, request: web.Request) -> web.Response:
        ok = await asyncio.to_thread(self.client.ping)
        return web.json_response({"ok": bool(ok), "mode": "stream ingest", "partitions": self.partitions})


def serve(paths: list[str], *, host: str, port: int, config_path: str | None, store_path: str,
          redis_url: str | None = None, partitions: int = 256) -> int:
    if redis_url is not None:
        web.run_app(StreamIngest(redis_url, partitions).app(), host=host, port=port,
                    print=lambda msg: print(f"pushlang serve (stream ingest): {msg}", flush=True),
                    loop=aio.new_event_loop())
        return 0
    service = LiveService(paths, config_path=config_path, store_path=store_path)
    app = service.app()

    async def on_startup(_: web.Application) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(service.reload()))

    app.on_startup.append(on_startup)
    web.run_app(app, host=host, port=port, print=lambda msg: print(f"pushlang serve: {msg}", flush=True),
                loop=aio.new_event_loop())
    return 0
