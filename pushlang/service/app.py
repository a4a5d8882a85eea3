"""`pushlang serve`: the engine on the wall clock with the SQLite store, over HTTP (aiohttp).

- ``POST /v1/records`` (bearer token): JSON Lines or a JSON array of SPEC §9.1 records; each bad
  record is reported with its index and reason, the valid ones are accepted — and committed to the
  store before the answer, so an accepted record survives a crash.
- ``POST /v1/browser/records`` (no API token, for the service worker and subscribe.js): only
  subscriptions and ``Push Viewed`` / ``Push Clicked`` of a known send, each for the user its user
  token was signed for, within a rate limit per client (``pushlang.service.identity``).
- ``GET /v1/campaigns``, ``POST /v1/reload`` (bearer token; and SIGHUP), ``GET /healthz`` (no token):
  a reload takes effect only when the files compile without errors; otherwise the diagnostics are
  returned and the running campaigns go on.
- ``GET /v1/stats``, ``GET /v1/stats/series`` (bearer token) and ``GET /dashboard``
  (``pushlang.service.dashboard``; the page sends the token it was opened with, ``#token=…``).
- Records are checked as a live host must (:class:`~pushlang.service.options.ServerOptions`): a
  ``ts`` more than ``[server] max_clock_skew`` (5m) ahead of the wall clock is rejected, one a little
  ahead counts as now (the engine never runs ahead of the wall clock), and a subscription's endpoint
  must be an ``https://`` URL of a push service. Timers due before a late record's ``ts`` fire before
  it, as in replay.
- Sends go through an outbox kept in the store and are delivered one request at a time as soon as
  their decision is committed (:mod:`pushlang.service.delivery`): a crash or SIGTERM never delivers the
  same ``send_id`` twice and fails (``interrupted``) only requests that were on the wire. A halted
  channel keeps its sends until ``POST /v1/channels/NAME/resume`` or a reload.
- `Push Viewed` / `Push Clicked` go through the engine like any event; it writes the `viewed` /
  `clicked` records that the stats count.
- ``DELETE /v1/users/{id}`` (bearer token): erase a user (``SqliteStore.forget``) and its sends
  waiting for delivery; the answer and one INFO line of ``pushlang.service`` say what was erased.

The scale-out's ingest API (``serve --redis``) is :class:`pushlang.scaleout.ingest.StreamIngest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from pushlang import aio, plan
from pushlang.compiler import compile_paths
from pushlang.config import Config, load_config
from pushlang.diagnostics import Sink
from pushlang.diagnostics.render import render_json
from pushlang.dispatch.dispatcher import APNS, WEBPUSH, DeliverySettings, Dispatcher
from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.engine import INTERACTIONS, Engine, SendJob
from pushlang.runtime.instants import US, iso
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import Event, Record, decode_body
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.service.delivery import OUTBOX, Deliveries, outbox_entry
from pushlang.service.http import MAX_BODY, bearer_ok, error, get_sdk, json_errors, unauthorized
from pushlang.service.identity import TOKEN_HEADER, BrowserGuard, add_browser_route
from pushlang.service.options import ServerOptions, server_table

log = logging.getLogger("pushlang.service")

STATIC = Path(__file__).resolve().parent / "static"
FEED_CHUNK = 2000  # records fed between two yields to the event loop (a big batch never blocks it)


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
            result.report()  # the diagnostics, with file:line:col
            raise ValueError("the campaigns do not compile (the diagnostics are above): nothing is served")
        self.plan: plan.Plan = result.plan
        self.config: Config = result.config
        self.token = token or os.environ.get("PUSHLANG_API_TOKEN") or self.config.raw.get("server", {}).get("token")
        if not self.token:
            raise ValueError("no API token: set PUSHLANG_API_TOKEN (or [server] token in pushlang.toml)")
        self.options = ServerOptions.from_config(self.config)
        self.settings = DeliverySettings.from_config(self.config)
        if not self.settings.problems():
            self.settings.check_keys()  # a key file that is not a key: said now, in words
        self.browser = BrowserGuard.from_server(server_table(self.config))
        self.store = SqliteStore(store_path, cache_size=cache_users(self.config))
        self.activity = ActivityLog(self.store)  # written in the store's transactions
        self.tick, self.clock = tick, clock
        self._uncommitted: list[SendJob] = []  # sends decided, not yet committed: not delivered yet
        self._lock = asyncio.Lock()  # the engine and the store: one request or tick at a time
        self.engine = self._engine(self.plan)
        self.deliveries: Deliveries | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _engine(self, compiled: plan.Plan) -> Engine:
        return Engine(compiled, self.store, self._output, on_send=self._send)

    def now(self) -> int:
        """The wall clock, µs."""
        return int(self.clock() * US)

    # ---- the engine's outputs ------------------------------------------------------------------

    def _output(self, out: Output) -> None:
        self.activity.record(out)

    def _send(self, job: SendJob) -> None:
        """A send decision: into the outbox (committed with the decision), delivered once committed."""
        self.store.set_meta(OUTBOX + job.send_id, outbox_entry(job))
        self._uncommitted.append(job)

    def _commit(self) -> None:
        """Commit what the engine and the deliveries did; the sends just committed start going out."""
        self.store.commit()
        self.activity.commit()
        jobs, self._uncommitted = self._uncommitted, []
        if self.deliveries is not None:
            for job in jobs:
                self.deliveries.submit(job)

    async def _commit_locked(self) -> None:
        async with self._lock:
            self._commit()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def _channels(self, config: Config) -> Dispatcher | None:
        """The delivery channels of ``config``, their key files read now (ValueError, in words, for
        a file that is not a key); None without credentials."""
        settings = DeliverySettings.from_config(config)
        if settings.problems():
            return None
        settings.check_keys()
        dispatcher = Dispatcher(settings, self.plan.settings.default_ttl)
        await dispatcher.__aenter__()
        self.settings = settings
        return dispatcher

    async def _replace_channels(self, config: Config) -> str | None:
        """New channels from ``config`` (a key fixed, rotated or added): halts cleared, the sends a
        halt kept go out, the requests on the wire finish on the old ones. A problem in words, or
        None (then nothing changed)."""
        assert self.deliveries is not None  # started
        problems = DeliverySettings.from_config(config).problems()
        if problems and self.dispatcher is not None:  # a key file being swapped: keep what works
            return "; ".join(problems)
        try:
            dispatcher = await self._channels(config)
        except ValueError as exc:
            return str(exc)
        self.deliveries.use(dispatcher)
        return None

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The delivery channels in use (None before the start, or without credentials)."""
        return self.deliveries.dispatcher if self.deliveries is not None else None

    async def start(self) -> None:
        self.deliveries = Deliveries(self.store, self.activity, self._commit_locked, await self._channels(self.config),
                                     grace=self.options.shutdown_grace)
        async with self._lock:
            self.deliveries.recover(self.plan.campaign)
            self._commit()
        self.deliveries.start()
        self._tasks = [asyncio.create_task(self._tick_forever())]

    async def stop(self) -> None:
        """SIGTERM: no new requests; those on the wire get the grace period; the rest stay pending."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.deliveries is not None:
            await self.deliveries.stop()
        async with self._lock:
            self._commit()
        self.store.close()
        self.activity.close()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                async with self._lock:
                    self.engine.advance(self.now(), inclusive=True)
                    self._commit()
            except asyncio.CancelledError:
                raise
            except Exception:  # a store that cannot write now (disk full…): said, and tried again
                log.exception("the timers could not advance; trying again at the next tick")

    # ---- HTTP -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
        app.router.add_post("/v1/records", self.post_records)
        add_browser_route(app, self._browser_records)
        app.router.add_get("/v1/campaigns", self.get_campaigns)
        app.router.add_post("/v1/reload", self.post_reload)
        app.router.add_post("/v1/channels/{name}/resume", self.post_resume)
        app.router.add_delete("/v1/users/{id:.+}", self.delete_user)
        app.router.add_get("/healthz", self.get_health)
        app.router.add_get("/sdk/demo", self.get_demo)
        app.router.add_get("/sdk/{name}", get_sdk)
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
        indexed, rejected = decode_body(await request.read())
        records = await self._feed([record for _, record in self._admit(indexed, rejected)])
        status = 200 if records or not rejected else 400
        return web.json_response({"accepted": len(records), "rejected": rejected}, status=status)

    def _admit(self, indexed: list[tuple[int, Record]],
               rejected: list[dict[str, object]]) -> list[tuple[int, Record]]:
        """The records a live service takes (:meth:`ServerOptions.admit`), each at most at the wall
        clock: a record a little ahead (a fast client clock) counts as now, so the engine never runs
        ahead of the wall clock. The refused ones join ``rejected``, in index order."""
        admitted = self.options.admit_all(indexed, rejected, self.now())
        rejected.sort(key=lambda r: -1 if r["index"] is None else int(str(r["index"])))
        return admitted

    async def _feed(self, records: list[Record],
                    admit: Callable[[list[Record]], list[Record]] | None = None) -> list[Record]:
        """Into the engine and committed before the answer (accepted means durable); ``admit``
        (under the engine's lock, so no other request changes the state it reads) may refuse some.
        A big batch yields to the event loop between chunks, so health checks and deliveries go on.
        The records fed."""
        async with self._lock:
            if admit is not None:
                records = admit(records)
            for start in range(0, len(records), FEED_CHUNK):
                if start:
                    await asyncio.sleep(0)
                for record in records[start:start + FEED_CHUNK]:
                    self.engine.feed(self._with_campaign(record))
            self._commit()
        return records

    async def _browser_records(self, request: web.Request) -> web.Response:
        if (refusal := self.browser.refusal(request)) is not None:
            return refusal
        indexed, rejected = decode_body(await request.read())
        if (refusal := self.browser.too_many(len(indexed) + len(rejected))) is not None:
            return refusal
        allowed = self.browser.screen(indexed, rejected, request.headers.get(TOKEN_HEADER), self._send_to, self.now())
        admitted = self._admit(allowed, rejected)

        indices = [index for index, _ in admitted]

        def within_the_cap(records: list[Record]) -> list[Record]:  # under the lock: the store as it is
            capped = self.browser.within_cap(list(zip(indices, records, strict=True)), rejected,
                                             self._active_subscriptions)
            return [record for _, record in capped]

        records = await self._feed([record for _, record in admitted], within_the_cap)
        rejected.sort(key=lambda r: -1 if r["index"] is None else int(str(r["index"])))
        status = 200 if records or not rejected else 400
        return web.json_response({"accepted": len(records), "rejected": rejected}, status=status)

    def _send_to(self, send_id: str, user: str) -> bool | None:
        send = self.activity.send_of(send_id)
        return None if send is None else send[1] == user

    def _active_subscriptions(self, user: str) -> set[str]:
        state = self.store.get(user)
        return {k for k, sub in state.subscriptions.items() if sub.active} if state is not None else set()

    def _with_campaign(self, record: Record) -> Record:
        """A `Push Viewed` / `Push Clicked` without `props.campaign` gets the campaign of its send_id,
        so that the engine can write its `viewed` / `clicked` record."""
        if not isinstance(record, Event) or record.name not in INTERACTIONS or record.props.get("campaign"):
            return record
        campaign = self.activity.campaign_of(str(record.props.get("send_id", "")))
        if campaign is None:
            return record
        return msgspec.structs.replace(record, props={**record.props, "campaign": campaign})

    async def delete_user(self, request: web.Request) -> web.Response:
        """Erase a user: the store's state, the outbox entries and the sends queued for delivery; a
        send already on its way is recorded under the erasure's anonymous ids when it returns. An
        unknown user is erased too: zero counts."""
        if not self._authorized(request):
            return unauthorized()
        user = request.match_info["id"]
        async with self._lock:
            self._commit()  # the user's pending records, before they are unlinked
            sends = [key[len(OUTBOX):] for key, entry in self.store.meta_items(OUTBOX)
                     if isinstance(entry, dict) and entry.get("user") == user]
            erasure = self.store.forget(user)
            self._uncommitted = [job for job in self._uncommitted if job.user != user]
            on_the_wire = self.deliveries.forget(user, sends) if self.deliveries is not None else set()
            self.activity.rename(erasure.anonymized, on_the_wire)
        log.info("erased user %r: %s", user, ", ".join(f"{kind} {n}" for kind, n in erasure.counts.items()))
        return web.json_response({"user": user, "erased": erasure.counts})

    async def get_campaigns(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return unauthorized()
        return web.json_response([{"id": c.id, "name": c.name, "labels": list(c.labels),
                                   "trigger": type(c.trigger).__name__, "plan_hash": plan_hash(c)}
                                  for c in self.plan.campaigns])

    async def get_health(self, request: web.Request) -> web.Response:
        """200 while the service takes records (a load balancer keeps sending them: they are kept
        even when delivery is impaired); ``ok`` is false while the delivery loop is down or a channel
        is halted, and ``deliveries`` says why (for monitoring)."""
        delivery: dict[str, Any] = self.deliveries.health() if self.deliveries is not None else {"state": "stopped"}
        halted: dict[str, str] = delivery.get("halted", {})
        ok = delivery["state"] == "running" and not halted
        return web.json_response({"ok": ok, "campaigns": len(self.plan.campaigns), "clock": iso(self.engine.clock),
                                  "delivery": "live" if self.dispatcher else "not configured",
                                  "halted": list(halted.values()), "deliveries": delivery})

    async def post_resume(self, request: web.Request) -> web.Response:
        """``POST /v1/channels/NAME/resume``: the operator fixed the credentials; the kept sends go out."""
        if not self._authorized(request):
            return unauthorized()
        name = request.match_info["name"]
        if name not in (WEBPUSH, APNS):
            return error(404, f"no channel {name!r}: the channels are {WEBPUSH} and {APNS}")
        halted = name in (self.dispatcher.halted if self.dispatcher is not None else {})
        sink = Sink()
        config = load_config(self.config.path, sink)  # the key files as they are now
        problem = "; ".join(d.message for d in sink.sorted()) or await self._replace_channels(config)
        if problem:
            log.error("channel %s not resumed: %s", name, problem)
            return web.json_response({"channel": name, "resumed": False, "error": problem}, status=422)
        log.warning("channel %s resumed by an operator (it was %s)", name, "halted" if halted else "not halted")
        return web.json_response({"channel": name, "resumed": halted})

    async def post_reload(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return unauthorized()
        return await self.reload()

    async def reload(self) -> web.Response:
        """Load the campaign files again when they compile (and are not suddenly none at all); a
        halted channel is resumed, as the operator may have fixed its key."""
        result = compile_paths(self.paths, config_path=self.config_path)
        if result.plan is None:
            body = msgspec.json.decode(render_json(result.diagnostics))
            log.error("reload refused: the campaign files do not compile (%d diagnostics); the running "
                      "campaigns go on", len(body))
            return web.json_response({"reloaded": False, "diagnostics": body}, status=422)
        if not result.plan.campaigns and self.plan.campaigns:
            message = (f"no campaigns found in {', '.join(self.paths)}: nothing reloaded (the running campaigns "
                       "go on; to stop them all, stop the service)")
            log.error("reload refused: %s", message)
            return web.json_response({"reloaded": False, "error": message}, status=422)
        try:  # a rotated user token secret takes effect with the campaigns
            self.browser = BrowserGuard.from_server(server_table(result.config), self.browser.limiter)
        except ValueError as exc:
            return web.json_response({"reloaded": False, "error": str(exc)}, status=422)
        async with self._lock:
            self.plan = result.plan
            self.engine = self._engine(result.plan)
        resumed = list(self.dispatcher.halted) if self.dispatcher is not None else []
        problem = await self._replace_channels(result.config)
        ids = [c.id for c in result.plan.campaigns]
        if problem:
            log.error("reloaded %d campaigns: %s; delivery goes on as before: %s", len(ids), ", ".join(ids), problem)
            return web.json_response({"reloaded": True, "campaigns": ids, "delivery_error": problem})
        log.warning("reloaded %d campaigns: %s%s", len(ids), ", ".join(ids),
                    f"; resumed {', '.join(resumed)}" if resumed else "")
        return web.json_response({"reloaded": True, "campaigns": ids})

    async def get_demo(self, request: web.Request) -> web.Response:
        """A page to try the SDK with: registers the worker for ?user=&token= and subscribes on a click."""
        key = ""
        if self.settings.vapid_key_file and Path(self.settings.vapid_key_file).is_file():
            from pushlang.dispatch.keys import load_public

            key = load_public(Path(self.settings.vapid_key_file))  # the public half only
        html = (STATIC / "sdk" / "demo.html").read_text(encoding="utf-8")
        html = html.replace('<html lang="en">', f'<html lang="en" data-vapid-key="{key}">', 1)
        return web.Response(text=html, content_type="text/html",
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


def serve(paths: list[str], *, host: str, port: int, config_path: str | None, store_path: str) -> int:
    """Run the live service until interrupted."""
    logging.basicConfig(level=logging.INFO, format="pushlang serve: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(quiet_bad_requests)
    service = LiveService(paths, config_path=config_path, store_path=store_path)
    if not service.browser.tokens.configured:
        log.warning("no [server] user_token_secret in pushlang.toml, so POST /v1/browser/records refuses every "
                    "record (browsers cannot subscribe); `pushlang keys user-secret` prints one")
    app = service.app()

    async def on_startup(_: web.Application) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(service.reload()))

    app.on_startup.append(on_startup)
    web.run_app(app, host=host, port=port, print=lambda msg: print(f"pushlang serve: {msg}", flush=True),
                loop=aio.new_event_loop())
    return 0


def quiet_bad_requests(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot even parse (a 64 KB header, a broken request line) with a
    traceback that holds part of the request — maybe a token. Say it in one line instead."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.msg, record.args, record.exc_info, record.exc_text = (
            "refused a malformed HTTP request (%s %s)", (error.code, type(error).__name__), None, None)
    return True
