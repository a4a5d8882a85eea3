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
- Sends go through an outbox kept in the store (a :class:`~pushlang.runtime.pipeline.QueuedSend` and
  its state): a send is written ``pending`` with the decision, marked ``sending`` just before the push
  goes out, and removed once it has a delivery record. After a crash, ``pending`` sends are delivered
  and ``sending`` ones are recorded as failed (``interrupted``) — so a restart never delivers the same
  ``send_id`` twice.
- `Push Viewed` / `Push Clicked` go through the engine like any event; it writes the `viewed` /
  `clicked` records that the stats count.

The scale-out's ingest API (``serve --redis``) is :class:`pushlang.scaleout.ingest.StreamIngest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from aiohttp import web

from pushlang import aio, plan
from pushlang.compiler import compile_paths
from pushlang.config import Config
from pushlang.diagnostics.render import render_json
from pushlang.dispatch.base import Delivery
from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher, delivery_record
from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.engine import INTERACTIONS, Engine, Output, SendJob
from pushlang.runtime.instants import US, iso
from pushlang.runtime.pipeline import queued_from
from pushlang.runtime.records import Event, Record, Subscribe, Unsubscribe, decode_body
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.service.http import MAX_BODY, bearer_ok, error, json_errors, unauthorized

STATIC = Path(__file__).resolve().parent / "static"
OUTBOX = "outbox:"
# The browser endpoint takes no token and only subscriptions, views and clicks: any origin may post.
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
         "Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "86400"}


def plan_hash(campaign: plan.Campaign) -> str:
    return hashlib.sha256(msgspec.json.encode(campaign)).hexdigest()[:16]


CACHE_USERS = 50_000  # the users kept in memory unless `[store] cache_users` says otherwise


def cache_users(config: Config) -> int | None:
    """`[store] cache_users` of pushlang.toml: how many users the store keeps in memory (None: all
    of them, written ``0``); ValueError in words for anything but a whole number."""
    section = config.raw.get("store", {})
    if not isinstance(section, dict):
        raise ValueError(f"`store` in {config.path} must be a table: [store] with cache_users = N")
    value = section.get("cache_users", CACHE_USERS)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"[store] cache_users = {value!r} in {config.path}: expected a whole number of users "
                         f"(e.g. {CACHE_USERS}), or 0 to keep every user in memory")
    return value or None


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
        self.store = SqliteStore(store_path, cache_size=cache_users(self.config))
        self.activity = ActivityLog(self.store)  # written in the store's transactions
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
        self.store.set_meta(OUTBOX + job.send_id, {**msgspec.to_builtins(job.queued()), "state": "pending"})
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
            queued = queued_from(entry, key[len(OUTBOX):])  # also as an earlier version wrote it
            campaign = self.plan.campaign(queued.campaign)
            state = self.store.get(queued.user)
            if entry.get("state") == "sending" or campaign is None or state is None:
                self.activity.record(Output(iso(queued.at), queued.campaign, queued.user, "failed",
                                            "interrupted", queued.send_id))
                self.store.set_meta(key, None)
                continue
            # where it goes is what the user's state says now (a subscription may be gone)
            targets = tuple(state.subscriptions[t.key] for t in queued.targets if t.key in state.subscriptions)
            self._jobs.append(SendJob.from_queued(queued, campaign, targets))
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
        self.store.commit()  # with the activity log's pending rows, in one transaction

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
        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
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
        assert self.token is not None
        return bearer_ok(request, self.token)

    async def post_records(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return unauthorized()
        records, rejected = decode_body(await request.read())
        async with self._lock:
            for record in records:
                self.engine.feed(self._with_campaign(record))
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
        records, rejected = decode_body(await request.read())
        allowed: list[Record] = []
        for index, record in enumerate(records):
            if isinstance(record, (Subscribe, Unsubscribe)):
                allowed.append(record)
            elif isinstance(record, Event) and record.name in INTERACTIONS:
                send_id = record.props.get("send_id")
                send = self.activity.send_of(send_id) if isinstance(send_id, str) else None
                if send is None:
                    rejected.append({"index": index, "reason": f"`{record.name}` for an unknown send_id"})
                elif send[1] != record.user:
                    rejected.append({"index": index, "reason": f"`{record.name}` for a send to another user"})
                else:
                    allowed.append(record)
            else:
                rejected.append({"index": index, "reason": "browsers may only send subscriptions and "
                                                           "Push Viewed / Push Clicked events"})
        async with self._lock:
            for record in allowed:
                self.engine.feed(self._with_campaign(record))
            self._commit()
        status = 200 if allowed or not rejected else 400
        return web.json_response({"accepted": len(allowed), "rejected": rejected}, status=status)

    def _with_campaign(self, record: Record) -> Record:
        """A `Push Viewed` / `Push Clicked` without `props.campaign` gets the campaign of its send_id,
        so that the engine can write its `viewed` / `clicked` record."""
        if not isinstance(record, Event) or record.name not in INTERACTIONS or record.props.get("campaign"):
            return record
        campaign = self.activity.campaign_of(str(record.props.get("send_id", "")))
        if campaign is None:
            return record
        return msgspec.structs.replace(record, props={**record.props, "campaign": campaign})

    async def get_campaigns(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return unauthorized()
        return web.json_response([{"id": c.id, "name": c.name, "labels": list(c.labels),
                                   "trigger": type(c.trigger).__name__, "plan_hash": plan_hash(c)}
                                  for c in self.plan.campaigns])

    async def get_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "campaigns": len(self.plan.campaigns), "clock": iso(self.engine.clock),
                                  "delivery": "live" if self.dispatcher else "not configured",
                                  "halted": self.halts})

    async def post_reload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return unauthorized()
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
            return error(404, f"no SDK file {name}")
        headers = {"Content-Type": "application/javascript", "Service-Worker-Allowed": "/"}
        return web.FileResponse(path, headers=headers)


def serve(paths: list[str], *, host: str, port: int, config_path: str | None, store_path: str) -> int:
    """Run the live service until interrupted."""
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
