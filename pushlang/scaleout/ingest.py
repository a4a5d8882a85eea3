"""Records into the partition streams: ``pushlang ingest`` (a file) and ``pushlang serve --redis`` (HTTP).

Each valid line goes to ``ev:{partition_of(user)}`` as it was written (field ``r``), in input order;
a bad line is reported with its number and skipped. End markers (field ``end``) tell the workers that
the input ends at an instant: a worker reaching one fires the partition's timers due by then, as
``replay --until`` does.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from pushlang import aio
from pushlang.runtime.instants import US
from pushlang.runtime.records import InvalidRecord, Record, Reject, body_items, decode_record
from pushlang.scaleout.keys import DEFAULT_PARTITIONS, out_key, partition_of, stream_key
from pushlang.scaleout.streams import field_of, text_of
from pushlang.service.http import MAX_BODY, bearer_ok, json_errors, unauthorized
from pushlang.service.options import ServerOptions

if TYPE_CHECKING:
    import redis

_decode = msgspec.json.Decoder().decode


def ingest(client: redis.Redis, lines: Iterable[bytes | str], partitions: int = DEFAULT_PARTITIONS, *,
           end_at_last: bool = False, chunk: int = 1000,
           check: Callable[[Record], str | None] | None = None,
           clamp: int | None = None) -> tuple[int, list[Reject]]:
    """Append each valid line (raw JSON, field ``r``) to ``ev:{partition_of(user)}``, in input order.

    Returns (records accepted, rejected lines with their 1-based line numbers). With ``end_at_last``,
    an end marker at the latest record instant follows (:func:`end_of_input`). ``check``: why a live
    host refuses a valid record (None: take it); ``clamp`` (µs): a record later than that is taken
    at that instant (a live host's wall clock: a client's clock a little fast)."""
    accepted = 0
    rejects: list[Reject] = []
    last: int | None = None
    pipe = client.pipeline(transaction=False)
    queued = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = decode_record(line)
            problem = check(record) if check is not None else None
            if problem is not None:
                raise InvalidRecord(problem)
        except InvalidRecord as exc:
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            rejects.append(Reject(number, str(exc), text.rstrip("\r\n")))
            continue
        raw: bytes | str = line.rstrip(b"\r\n") if isinstance(line, bytes) else line.rstrip("\r\n")
        if clamp is not None and record.ts > clamp:
            raw = msgspec.json.encode({**_decode(raw), "ts": clamp / US})
            record = msgspec.structs.replace(record, ts=clamp)
        pipe.xadd(stream_key(partition_of(record.user, partitions)), {"r": raw})
        accepted += 1
        last = record.ts if last is None else max(last, record.ts)
        queued += 1
        if queued >= chunk:
            pipe.execute()
            queued = 0
    if queued:
        pipe.execute()
    if end_at_last and last is not None:
        end_of_input(client, partitions, last)
    return accepted, rejects


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


class StreamIngest:
    """`pushlang serve --redis URL`: the ingest API of scale-out. Records go to the partition
    streams (SPEC §9.1 validation, per-record errors), where `pushlang worker` processes pick them up;
    accepted means the XADD succeeded."""

    def __init__(self, redis_url: str, partitions: int, token: str | None = None,
                 options: ServerOptions | None = None) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.partitions = partitions
        self.options = options or ServerOptions()
        self.token = token or os.environ.get("PUSHLANG_API_TOKEN")
        if not self.token:
            raise ValueError("no API token: set PUSHLANG_API_TOKEN")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
        app.router.add_post("/v1/records", self.post_records)
        app.router.add_get("/healthz", self.get_health)
        return app

    async def post_records(self, request: web.Request) -> web.Response:
        assert self.token is not None
        if not bearer_ok(request, self.token):
            return unauthorized()
        try:
            items = body_items(await request.read())
        except ValueError as exc:
            return web.json_response({"accepted": 0, "rejected": [{"index": None, "reason": str(exc)}]}, status=400)
        now = int(time.time() * US)
        accepted, rejects = await asyncio.to_thread(ingest, self.client, items, self.partitions,
                                                    check=lambda record: self.options.problem(record, now), clamp=now)
        rejected = [{"index": r.line - 1, "reason": r.reason} for r in rejects]
        return web.json_response({"accepted": accepted, "rejected": rejected},
                                 status=200 if accepted or not rejected else 400)

    async def get_health(self, request: web.Request) -> web.Response:
        ok = await asyncio.to_thread(self.client.ping)
        return web.json_response({"ok": bool(ok), "mode": "stream ingest", "partitions": self.partitions})


def serve_ingest(redis_url: str, partitions: int, *, host: str, port: int,
                 options: ServerOptions | None = None) -> int:
    """Run the scale-out ingest API until interrupted."""
    web.run_app(StreamIngest(redis_url, partitions, options=options).app(), host=host, port=port,
                print=lambda msg: print(f"pushlang serve (stream ingest): {msg}", flush=True),
                loop=aio.new_event_loop())
    return 0
