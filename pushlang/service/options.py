"""The ``[server]`` section of pushlang.toml as `pushlang serve` reads it (checked at start: a wrong
value is an error that says what to write, not a surprise later)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from pushlang.config import Config, parse_duration
from pushlang.dispatch.webpush import endpoint_problem
from pushlang.runtime.instants import US, iso
from pushlang.runtime.records import Record, Subscribe

DEFAULT_SKEW = 300  # seconds


@dataclass(frozen=True)
class ServerOptions:
    """``max_clock_skew``: how far ahead of the deployment's clock (the wall clock of `serve`, Redis
    server time for a scale-out on the wall clock) a record's ``ts`` may be (a client's clock a little
    fast); beyond it the record is rejected. ``shutdown_grace``: seconds the
    requests on the wire get on SIGTERM. ``allow_loopback_http``: accept ``http://`` subscription
    endpoints on a loopback address (a local test push service; never in production)."""

    max_clock_skew: int = DEFAULT_SKEW
    shutdown_grace: int = 10
    allow_loopback_http: bool = False

    @classmethod
    def from_config(cls, config: Config) -> ServerOptions:
        server = server_table(config)
        return cls(
            max_clock_skew=_duration(server, "max_clock_skew", DEFAULT_SKEW),
            shutdown_grace=_duration(server, "shutdown_grace", 10),
            allow_loopback_http=_flag(server, "allow_loopback_http"),
        )


    def ahead(self, record: Record, now: int | None) -> Record | str:
        """The clock-skew rule of every live host: a record more than ``max_clock_skew`` ahead of
        ``now`` (the deployment's clock, µs) is refused (the reason, in words); one a little ahead (a
        client's clock a little fast) is taken at ``now``, so no clock runs ahead of the deployment's.
        ``now`` None: the records define time (scale-out on the records clock), none is ahead of it."""
        if now is None or record.ts <= now:
            return record
        if record.ts > now + self.max_clock_skew * US:
            return (f"`ts` {iso(record.ts)} is more than {_words(self.max_clock_skew)} ahead of the service's "
                    f"clock ({iso(now)}): check the sender's clock ([server] max_clock_skew)")
        return msgspec.structs.replace(record, ts=now)

    def admit(self, record: Record, now: int | None) -> Record | str:
        """A record valid by SPEC §9.1 as a live host (`serve`, `serve --redis`) takes it — maybe
        stamped ``now`` (:meth:`ahead`) — or why it refuses it, in words."""
        admitted = self.ahead(record, now)
        if isinstance(admitted, str):
            return admitted
        if isinstance(record, Subscribe) and record.endpoint is not None:
            problem = endpoint_problem(record.endpoint, allow_http=self.allow_loopback_http)
            if problem is not None:
                return problem
        return admitted

    def admit_all(self, indexed: list[tuple[int, Record]], rejected: list[dict[str, Any]],
                  now: int | None) -> list[tuple[int, Record]]:
        """The indexed records :meth:`admit` takes; each refused one joins ``rejected`` with its
        index and reason."""
        taken: list[tuple[int, Record]] = []
        for index, record in indexed:
            admitted = self.admit(record, now)
            if isinstance(admitted, str):
                rejected.append({"index": index, "reason": admitted})
            else:
                taken.append((index, admitted))
        return taken


def server_table(config: Config) -> dict[str, Any]:
    """The ``[server]`` table of pushlang.toml (empty when absent); ValueError when it is no table."""
    server = config.raw.get("server", {})
    if not isinstance(server, dict):
        raise ValueError("[server] in pushlang.toml must be a table")
    return server


def _words(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _duration(section: dict[str, Any], key: str, default: int) -> int:
    value = section.get(key)
    if value is None:
        return default
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is None:
        raise ValueError(f'[server] {key} = {value!r} is not a duration: write it like "5m" or "30s"')
    return seconds


def _flag(section: dict[str, Any], key: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"[server] {key} = {value!r} must be true or false")
    return value
