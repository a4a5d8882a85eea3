"""Redis Streams helpers: the fields of an entry, and the bounds of what the streams keep.

Consumed entries of ``ev:{p}`` (by the partition workers) and of ``ob:{p}`` (by the dispatch workers)
are trimmed once a second while busy and when the stream goes idle. ``out:{p}`` is the output, read by
whatever the operator attaches: every XADD to it trims it to about ``KEEP_OUTPUTS`` entries
(``MAXLEN ~``; a worker's ``--keep-outputs``), so a consumer that falls further behind than that loses
the oldest. ``dl:{p}`` keeps about the last ``DEAD_LETTERS_KEPT`` dead letters.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

TRIM_EVERY = 1.0  # seconds: how often a busy stream's consumed entries are trimmed
KEEP_OUTPUTS = 20_000  # entries of out:{p} kept (about: MAXLEN ~): 5M decisions over 256 partitions
DEAD_LETTERS_KEPT = 1_000  # entries of dl:{p} kept (about)


def text_of(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def field_of(fields: dict[Any, Any] | None, name: str) -> Any:
    """A field of a stream entry, whether the client decodes responses or not."""
    if not fields:
        return None
    value = fields.get(name.encode())
    return fields.get(name) if value is None else value


def trim_consumed(client: redis.Redis, stream: str, group: str) -> int:
    """Delete the entries of ``stream`` its consumer group is done with; how many went.

    Kept: the group's last-delivered entry and everything after it, and every entry from the oldest
    still pending (read, not acknowledged: a dead reader's batch that is yet to be claimed). Both are
    read in one MULTI/EXEC; after it, no entry below the cut can become pending again (new reads take
    later ids, claims move entries that are already pending), so nothing unfinished is lost."""
    from redis.exceptions import ResponseError

    pipe = client.pipeline(transaction=True)
    pipe.xinfo_groups(stream)
    pipe.xpending(stream, group)
    try:
        groups, pending = pipe.execute()
    except ResponseError as exc:
        if "NOGROUP" in str(exc):
            return 0  # no such stream or group (yet): nothing was consumed
        raise
    # a cluster's transactions answer unparsed: byte keys, flat pairs, XPENDING as [count, min, max, consumers]
    groups = [_as_dict(g) for g in groups]
    pending = _as_dict(pending)
    last = next((g["last-delivered-id"] for g in groups if text_of(g["name"]) == group), None)
    if last is None:
        return 0
    cut = _stream_id(text_of(last) or "0-0")
    if pending["pending"] and pending["min"] is not None:
        cut = min(cut, _stream_id(text_of(pending["min"]) or "0-0"))
    if cut <= (0, 0):
        return 0
    return int(client.xtrim(stream, minid=f"{cut[0]}-{cut[1]}", approximate=False))


class Trimmer:
    """Trims the streams whose entries a worker acknowledged: at most once every ``TRIM_EVERY``
    seconds while it is busy, and as soon as it finds no new work."""

    def __init__(self, client: redis.Redis, group: str) -> None:
        self.client, self.group = client, group
        self.streams: set[str] = set()  # acknowledged in since the last trim
        self._at = 0.0

    def consumed(self, stream: str) -> None:
        self.streams.add(stream)

    def maybe(self, idle: bool) -> None:
        if self.streams and (idle or time.monotonic() - self._at >= TRIM_EVERY):
            for stream in sorted(self.streams):
                trim_consumed(self.client, stream, self.group)
            self.streams.clear()
            self._at = time.monotonic()


def _as_dict(reply: Any) -> dict[str, Any]:
    """A reply the client left raw (a cluster client's transaction): XINFO GROUPS' flat field/value list
    of one group, or XPENDING's summary [count, min, max, consumers]."""
    if isinstance(reply, dict):
        return {text_of(k) or "": v for k, v in reply.items()}
    if len(reply) == 4 and not isinstance(reply[0], (bytes, str)):
        return {"pending": reply[0], "min": reply[1], "max": reply[2], "consumers": reply[3]}
    return {text_of(reply[i]) or "": reply[i + 1] for i in range(0, len(reply), 2)}


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def stream_id(value: bytes | str) -> tuple[int, int]:
    """An entry id as a pair that sorts as the stream does."""
    return _stream_id(text_of(value) or "0-0")
