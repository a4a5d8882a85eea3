"""What every delivery channel shares: how a delivery ended, and the halt of a channel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("pushlang.dispatch")


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one delivery ended: ``reason`` says why it failed; ``deactivate`` drops the subscription."""

    delivered: bool
    status: int | None
    reason: str | None
    attempts: int
    deactivate: bool = False


def backoff(attempt: int, retry_after: float | None, *, base: float, ceiling: float, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After when it gave one,
    else exponential from ``base`` with "equal jitter" (``jitter`` in [0, 1))."""
    if retry_after is not None:
        return min(retry_after, ceiling)
    top: float = min(ceiling, base * 2.0 ** (attempt - 1))
    return top / 2 + jitter * top / 2


class Halt:
    """A channel's credentials were rejected: stop it once, tell the operator once."""

    def __init__(self, channel: str, on_halt: Callable[[str], None] | None = None) -> None:
        self.channel = channel
        self.why: str | None = None
        self._on_halt = on_halt

    def __call__(self, why: str) -> None:
        if self.why is None:
            self.why = why
            log.error("%s channel halted: %s", self.channel, why)
            if self._on_halt is not None:
                self._on_halt(why)


class Probe:
    """Until a service has answered one request, that request goes out alone: a rejection of our
    credentials then costs one attempt, not one per user. Use ``async with probe.gate():``."""

    def __init__(self) -> None:
        self._probing = False
        self._answered = asyncio.Event()

    async def _enter(self) -> bool:
        if self._answered.is_set():
            return False
        if not self._probing:
            self._probing = True
            return True
        await self._answered.wait()
        return False

    @property
    def answered(self) -> bool:
        """The service has answered once: requests no longer wait for the probe."""
        return self._answered.is_set()

    def gate(self) -> _Gate:
        return _Gate(self)


class _Gate:
    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self._first = False

    async def __aenter__(self) -> None:
        self._first = await self._probe._enter()

    async def __aexit__(self, *exc: object) -> None:
        if self._first:  # halted or trusted: either way nobody waits any more
            self._probe._probing = False
            self._probe._answered.set()
