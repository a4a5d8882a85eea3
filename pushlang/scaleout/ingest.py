"""Records into the partition streams: ``pushlang ingest`` (a file) and ``pushlang serve --redis`` (HTTP).

Each valid line goes to ``ev:{partition_of(user)}`` as it was written (field ``r``), in input order;
a bad line is reported with its number and skipped. End markers (field ``end``) tell the workers that
the input ends at an instant: a worker reaching one fires the partition's timers due by then, as
``replay --until`` does.

Exactly once: a request (or a chunk of a file) that names an idempotency key is appended partition
by partition, each partition's records and the marker ``idem:{p}:<key>`` in ONE atomic script on the
partition's slot (a request's records go to many slots, so one MULTI cannot span them), skipped when
the marker is already there. A request cut midway (a connection reset, a Redis restart) has written
whole partitions or nothing of them; its retry with the same key writes exactly the partitions that
are missing. The marker holds the request's digest, so a key used again for other records is refused
before anything is written. Markers expire after ``IDEMPOTENCY_TTL``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from aiohttp import web

from pushlang import aio
from pushlang.runtime.instants import US
from pushlang.runtime.records import InvalidRecord, Record, Reject, body_items, decode_items, decode_record
from pushlang.runtime.store import UserState
from pushlang.scaleout.connection import check_layout, connect, server_time_us
from pushlang.scaleout.keys import (
    DEFAULT_PARTITIONS,
    idempotency_key,
    out_key,
    partition_of,
    stream_key,
    users_key,
)
from pushlang.scaleout.store import decode_user
from pushlang.scaleout.streams import field_of, text_of
from pushlang.service.http import MAX_BODY, bearer_ok, error, get_sdk, json_errors, unauthorized
from pushlang.service.identity import TOKEN_HEADER, BrowserGuard, add_browser_route
from pushlang.service.options import ServerOptions

if TYPE_CHECKING:
    import redis

log = logging.getLogger("pushlang.scaleout")

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = 24 * 3600  # seconds a request's markers are kept: a retry within a day is exactly once
MAX_KEY = 200  # characters of an Idempotency-Key
CHUNK = 5000  # input lines appended at a time by `pushlang ingest` (one idempotency key each)

_decode = msgspec.json.Decoder().decode

# KEYS[1] ev:{p}, KEYS[2] idem:{p}:<key>; ARGV: the request's digest, the marker's TTL (s), the records.
# One script: the partition's records and its marker are written together or not at all (a script
# is atomic, and replicated and written to the AOF whole). -1: done before; -2: the key was used for
# other records.
_APPEND_ONCE = """
local done = redis.call('GET', KEYS[2])
if done then
  if done == ARGV[1] then return -1 end
  return -2
end
for i = 3, #ARGV do redis.call('XADD', KEYS[1], '*', 'r', ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return #ARGV - 2
"""

# A live host's rules: the record (maybe stamped with another ``ts``) or why it is refused, given the
# deployment's clock (µs; None on the records clock).
Admit = Callable[[Record, "int | None"], "Record | str"]


class Entry(NamedTuple):
    """A record as it goes into its stream: the line as written (or with the ``ts`` a live host gave
    it) and the record it decodes to."""

    raw: bytes | str
    record: Record


class Once(NamedTuple):
    """An idempotency key and the digest of the records it names."""

    key: str
    digest: str


class KeyReused(ValueError):
    """The idempotency key was already used, within its TTL, for other records."""


def admitted(numbered: Iterable[tuple[int, bytes | str]], admit: Admit | None = None,
             now: int | None = None) -> tuple[list[Entry], list[Reject]]:
    """The valid records (SPEC §9.1) that ``admit`` takes at ``now``, and the rejected lines with
    their numbers."""
    entries: list[Entry] = []
    rejects: list[Reject] = []
    for number, line in numbered:
        if not line.strip():
            continue
        raw: bytes | str = line.rstrip(b"\r\n") if isinstance(line, bytes) else line.rstrip("\r\n")
        try:
            record = decode_record(raw)
        except InvalidRecord as exc:
            rejects.append(Reject(number, str(exc), _text(raw)))
            continue
        taken = admit(record, now) if admit is not None else record
        if isinstance(taken, str):
            rejects.append(Reject(number, taken, _text(raw)))
            continue
        entries.append(Entry(with_ts(raw, taken.ts) if taken.ts != record.ts else raw, taken))
    return entries, rejects


def with_ts(raw: bytes | str, ts: int) -> bytes:
    """The record line with ``ts`` (µs) in place of its own."""
    return msgspec.json.encode({**_decode(raw), "ts": ts / US})


def append(client: redis.Redis, entries: list[Entry], partitions: int, once: Once | None = None) -> None:
    """Append ``entries`` to their partition streams, in order. With ``once``, exactly once: each
    partition's records with its marker in one script, the partitions marked done before skipped
    (:class:`KeyReused` when the key names other records). Without it, a retry appends again."""
    by_partition: dict[int, list[bytes | str]] = defaultdict(list)
    for entry in entries:
        by_partition[partition_of(entry.record.user, partitions)].append(entry.raw)
    if not by_partition:
        return
    pipe = client.pipeline(transaction=False)
    if once is None:
        for p, raws in by_partition.items():
            for raw in raws:
                pipe.xadd(stream_key(p), {"r": raw})
        pipe.execute()
        return
    markers = {p: idempotency_key(p, once.key) for p in by_partition}
    for marker in markers.values():
        pipe.get(marker)
    if any(v is not None and text_of(v) != once.digest for v in pipe.execute()):
        raise KeyReused(once.key)
    for p, raws in by_partition.items():
        # EVAL by name: a cluster pipeline's eval() is not the command (the keys route it to the slot)
        pipe.execute_command("EVAL", _APPEND_ONCE, 2, stream_key(p), markers[p], once.digest,  # type: ignore[no-untyped-call]
                             IDEMPOTENCY_TTL, *raws)
    if any(result == -2 for result in pipe.execute()):  # another request with this key, meanwhile
        raise KeyReused(once.key)


def ingest(client: redis.Redis, lines: Iterable[bytes | str], partitions: int = DEFAULT_PARTITIONS, *,
           end_at_last: bool = False, chunk: int = CHUNK, wall_clock: bool = False,
           admit: Admit | None = None,
           once: bool = False) -> tuple[int, list[Reject]]:
    """Append each valid line (raw JSON, field ``r``) to ``ev:{partition_of(user)}``, in input order,
    ``chunk`` input lines at a time.

    Returns (records accepted, rejected lines with their 1-based line numbers). ``admit(record, now)``:
    a live host's rules, ``now`` being Redis server time with ``wall_clock`` (None: the records clock).
    With ``once``, each chunk is appended exactly once (:func:`append`) under a key derived from its
    position and content, so running the same input again — after a cut, within a day — appends only
    what is missing. With ``end_at_last``, an end marker at the latest record instant follows
    (:func:`end_of_input`)."""
    accepted = 0
    rejects: list[Reject] = []
    last: int | None = None
    for index, numbered in enumerate(_chunks(lines, chunk)):
        now = server_time_us(client) if wall_clock else None
        entries, refused = admitted(numbered, admit, now)
        rejects += refused
        append(client, entries, partitions, _chunk_key(index, numbered) if once else None)
        accepted += len(entries)
        if entries:
            latest = max(entry.record.ts for entry in entries)
            last = latest if last is None else max(last, latest)
    if end_at_last and last is not None:
        end_of_input(client, partitions, last)
    return accepted, rejects


def _chunks(lines: Iterable[bytes | str], size: int) -> Iterator[list[tuple[int, bytes | str]]]:
    numbered: list[tuple[int, bytes | str]] = []
    for number, line in enumerate(lines, 1):
        numbered.append((number, line))
        if len(numbered) >= size:
            yield numbered
            numbered = []
    if numbered:
        yield numbered


def _chunk_key(index: int, numbered: list[tuple[int, bytes | str]]) -> Once:
    digest = hashlib.sha256(f"{index}:{len(numbered)}\n".encode())
    for _, line in numbered:
        digest.update(line if isinstance(line, bytes) else line.encode())
    name = "ingest-" + digest.hexdigest()[:32]
    return Once(name, name)


def end_of_input(client: redis.Redis, partitions: int, until_us: int) -> None:
    """An end marker (field ``end`` = ``until_us``) on every partition stream: a worker reaching it
    fires the partition's timers due at or before ``until_us``, as ``replay`` does at its input's end."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.xadd(stream_key(p), {"end": str(until_us)})
    pipe.execute()


def collect_outputs(client: redis.Redis, partitions: int, chunk: int = 5000) -> list[dict[str, Any]]:
    """Every output written to ``out:{p}``, partition by partition, in stream order."""
    found: list[dict[str, Any]] = []
    for p in range(partitions):
        start = "-"
        while True:
            entries: Any = client.xrange(out_key(p), start, "+", count=chunk)
            for _eid, fields in entries:
                found.append(_decode(field_of(fields, "o")))
            if len(entries) < chunk:
                break
            start = "(" + (text_of(entries[-1][0]) or "")
    return found


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def idempotency(request: web.Request, body: bytes) -> Once | None:
    """The request's ``Idempotency-Key`` with the digest of its body (None without the header);
    ValueError for a key that cannot be one."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY or not key.isascii() or not key.isprintable() or " " in key:
        raise ValueError(f"the {IDEMPOTENCY_HEADER} header must be 1 to {MAX_KEY} printable ASCII characters "
                         "without spaces (a UUID is a good one)")
    return Once(key, hashlib.sha256(body).hexdigest())


class StreamIngest:
    """`pushlang serve --redis URL`: the ingest API of scale-out. Records go to the partition
    streams (SPEC §9.1 validation, per-record errors), where `pushlang worker` processes pick them up;
    accepted means they are in the streams. ``POST /v1/records`` (bearer token) and
    ``POST /v1/browser/records`` (user tokens, :mod:`pushlang.service.identity`) take an
    ``Idempotency-Key``; the SDK is served at ``/sdk/sw.js`` and ``/sdk/subscribe.js``.

    The deployment's layout is checked when it starts (:func:`check_layout`: LayoutMismatch). On the
    ``wall`` clock, records more than ``[server] max_clock_skew`` ahead of Redis server time are
    refused and those a little ahead are stamped with it; on the ``records`` clock the records define
    time."""

    def __init__(self, redis_url: str, partitions: int, token: str | None = None,
                 options: ServerOptions | None = None, *, clock: str = "wall",
                 browser: BrowserGuard | None = None) -> None:
        self.client = connect(redis_url)
        try:
            check_layout(self.client, partitions, clock)
        except BaseException:
            self.client.close()
            raise
        self.partitions, self.clock = partitions, clock
        self.options = options or ServerOptions()
        self.browser = browser or BrowserGuard.from_server({})
        self.token = token or os.environ.get("PUSHLANG_API_TOKEN")
        if not self.token:
            self.client.close()
            raise ValueError("no API token: set PUSHLANG_API_TOKEN")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
        app.router.add_post("/v1/records", self.post_records)
        add_browser_route(app, self._browser_records)
        app.router.add_get("/healthz", self.get_health)
        app.router.add_get("/sdk/{name}", get_sdk)
        app.on_cleanup.append(lambda _: asyncio.to_thread(self.client.close))
        return app

    def now(self) -> int | None:
        """The deployment's clock for admitting records: Redis server time (µs) on the wall clock."""
        return server_time_us(self.client) if self.clock == "wall" else None

    async def post_records(self, request: web.Request) -> web.Response:
        assert self.token is not None
        if not bearer_ok(request, self.token):
            return unauthorized()
        read = await _read(request)
        if isinstance(read, web.Response):
            return read
        once, items = read

        def take() -> tuple[int, list[Reject]]:
            entries, rejects = admitted(enumerate(items, 1), self.options.admit, self.now())
            append(self.client, entries, self.partitions, once)
            return len(entries), rejects

        return await self._answer(take, once)

    async def _answer(self, take: Callable[[], tuple[int, list[Reject]]], once: Once | None) -> web.Response:
        """Run ``take`` (in a thread: it waits for Redis) and answer: 200 when records were taken (or
        none was rejected), 400 when all were rejected, a JSON 503 when Redis failed midway."""
        import redis

        try:
            accepted, rejects = await asyncio.to_thread(take)
        except KeyReused as exc:
            return error(422, f"the {IDEMPOTENCY_HEADER} {exc} was used for other records within the last "
                              f"{IDEMPOTENCY_TTL // 3600} h: use a new key for new records")
        except redis.RedisError as exc:
            log.warning("records not (all) appended: Redis: %s", exc)
            retry = (f"retry with the same {IDEMPOTENCY_HEADER}: the partitions already written are skipped"
                     if once is not None else
                     f"some of them may be appended: a retry may append those twice (send an {IDEMPOTENCY_HEADER} "
                     "to make a retry safe)")
            return error(503, f"Redis failed before every record was appended ({type(exc).__name__}: {exc}); "
                              f"{retry}", headers={"Retry-After": "1"})
        rejected = [{"index": r.line - 1, "reason": r.reason} for r in rejects]
        return web.json_response({"accepted": accepted, "rejected": rejected},
                                 status=200 if accepted or not rejected else 400)

    async def _browser_records(self, request: web.Request) -> web.Response:
        """The rules of `pushlang serve`'s browser endpoint (:class:`BrowserGuard`), against the users'
        state in Redis: a view or click must be of a send to its user, and the subscription cap counts
        the active subscriptions the workers have stored."""
        if (refusal := self.browser.refusal(request)) is not None:
            return refusal
        read = await _read(request)
        if isinstance(read, web.Response):
            return read
        once, items = read
        if (refusal := self.browser.too_many(len(items))) is not None:
            return refusal
        token = request.headers.get(TOKEN_HEADER)

        def take() -> tuple[int, list[Reject]]:
            indexed, rejected = decode_items(items)
            states = _States(self.client, self.partitions)
            now = self.now() or server_time_us(self.client)  # a browser's records happen when they arrive
            allowed = self.browser.screen(indexed, rejected, token, states.send_to, now)
            kept = self.options.admit_all(allowed, rejected, now)
            kept = self.browser.within_cap(kept, rejected, states.active_subscriptions)
            append(self.client, [Entry(with_ts(items[i], r.ts), r) for i, r in kept], self.partitions, once)
            rejects = [Reject(int(r["index"]) + 1, str(r["reason"]), "") for r in rejected]
            return len(kept), sorted(rejects, key=lambda r: r.line)

        return await self._answer(take, once)

    async def get_health(self, request: web.Request) -> web.Response:
        """200 while Redis answers; a JSON 503 (``ok`` false, the ``error``) while it does not."""
        import redis

        try:
            await asyncio.to_thread(self.client.ping)
        except redis.RedisError as exc:
            return web.json_response({"ok": False, "mode": "stream ingest", "error": f"Redis: {exc}"}, status=503)
        return web.json_response({"ok": True, "mode": "stream ingest", "partitions": self.partitions,
                                  "clock": self.clock})


class _States:
    """The users' state as the workers stored it (``u:{p}``), read once per user for one request."""

    def __init__(self, client: redis.Redis, partitions: int) -> None:
        self.client, self.partitions = client, partitions
        self._found: dict[str, UserState | None] = {}

    def state(self, user: str) -> UserState | None:
        if user not in self._found:
            raw: Any = self.client.hget(users_key(partition_of(user, self.partitions)), user)
            self._found[user] = decode_user(raw) if raw is not None else None
        return self._found[user]

    def send_to(self, send_id: str, user: str) -> bool | None:
        """True for a send to ``user``; None otherwise (a user's sends are only in its own state)."""
        state = self.state(user)
        return True if state is not None and send_id in state.sends else None

    def active_subscriptions(self, user: str) -> set[str]:
        state = self.state(user)
        return {k for k, sub in state.subscriptions.items() if sub.active} if state is not None else set()


def serve_ingest(redis_url: str, partitions: int, *, host: str, port: int, options: ServerOptions | None = None,
                 clock: str = "wall", browser: BrowserGuard | None = None) -> int:
    """Run the scale-out ingest API until interrupted (LayoutMismatch first when the Redis is laid out
    with other partitions or another clock)."""
    service = StreamIngest(redis_url, partitions, options=options, clock=clock, browser=browser)
    if not service.browser.tokens.configured:
        log.warning("no [server] user_token_secret in pushlang.toml, so POST /v1/browser/records refuses every "
                    "record (browsers cannot subscribe); `pushlang keys user-secret` prints one")
    web.run_app(service.app(), host=host, port=port,
                print=lambda msg: print(f"pushlang serve (stream ingest): {msg}", flush=True),
                loop=aio.new_event_loop())
    return 0


async def _read(request: web.Request) -> tuple[Once | None, list[bytes]] | web.Response:
    """A records request's idempotency key and body items, or the 400 that says what is wrong."""
    body = await request.read()
    try:
        return idempotency(request, body), body_items(body)
    except ValueError as exc:
        return web.json_response({"accepted": 0, "rejected": [{"index": None, "reason": str(exc)}]}, status=400)
