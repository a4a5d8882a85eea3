"""What every delivery channel shares: how a delivery ended, and the halt of a channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("pushlang.dispatch")


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one delivery ended: ``reason`` says why it failed; ``deactivate`` drops the subscription."""

    delivered: bool
    status: int | None
    reason: str | None
    attempts: int
    deactivate: bool = False


class Withheld(Exception):
    """Raised by :meth:`Wire.on`: this request must not go out now (the service is stopping); the
    send stays pending."""


class Wire(Protocol):
    """Told when a delivery's requests are on the wire (the live service keeps a durable mark, so
    that after a crash only a request that really was out is counted as interrupted)."""

    def on(self) -> None:
        """Just before a request goes out (may raise :class:`Withheld`)."""

    def off(self) -> None:
        """Its answer came (or it timed out, after :meth:`doubt`) and another attempt follows after
        a wait."""

    def doubt(self) -> None:
        """A request timed out: the push service may have taken it, whatever happens next."""


def backoff(attempt: int, retry_after: float | None, *, base: float, ceiling: float, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After when it gave one,
    else exponential from ``base`` with "equal jitter" (``jitter`` in [0, 1))."""
    if retry_after is not None:
        return min(retry_after, ceiling)
    top: float = min(ceiling, base * 2.0 ** (attempt - 1))
    return top / 2 + jitter * top / 2


def after_timeout(wire: Wire | None, timeouts: int, attempt: int) -> tuple[int, Delivery | None]:
    """A try that timed out (SPEC §9.5): the service may have taken it and answered late, so its request
    is in doubt on the wire, and it gets one more try at most (the Topic header, or APNs' collapse id,
    makes the service replace an undelivered first copy). Returns the timeouts so far and, at the
    second, the delivery that gives up."""
    if wire is not None:
        wire.doubt()
    timeouts += 1
    return timeouts, Delivery(False, None, "timeout", attempt) if timeouts > 1 else None


class Halt:
    """A channel's credentials were rejected: stop it once, tell the operator once. `pushlang serve`
    builds new channels when the operator has fixed the key (a reload, or ``POST
    /v1/channels/NAME/resume``)."""

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
    credentials then costs one attempt, not one per user. The probe's first *answer* (whatever it
    is) opens the gate: its retries, backoff and Retry-After never hold the others. A probe that
    ends without a request (bad subscription keys…) hands the turn to the next one.

    ``hold = await probe.turn()``: None once the gate is open; else this request is the probe and
    calls ``hold.release(answered=…)`` (again is harmless: only the first call counts)."""

    def __init__(self) -> None:
        self._probing = False
        self._answered = False
        self._round = asyncio.Event()

    @property
    def answered(self) -> bool:
        """The service has answered once: requests no longer wait for the probe."""
        return self._answered

    async def turn(self) -> Hold | None:
        while not self._answered:
            if not self._probing:
                self._probing = True
                return Hold(self)
            await self._round.wait()
        return None

    def _release(self, answered: bool) -> None:
        self._probing = False
        self._answered = self._answered or answered
        done, self._round = self._round, asyncio.Event()
        done.set()


class Hold:
    """The probe's turn, held by one request."""

    __slots__ = ("_done", "_probe")

    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self._done = False

    def release(self, *, answered: bool) -> None:
        if not self._done:
            self._done = True
            self._probe._release(answered)


class _Chain:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Chains:
    """One subscription's requests one after another: a lock per subscription key, dropped when no
    request uses it (never while one still waits for it). The one rule of every delivery loop."""

    def __init__(self) -> None:
        self._chains: dict[str, _Chain] = {}

    def __len__(self) -> int:
        return len(self._chains)

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Wait for the subscription's turn; hold it for the ``async with`` block."""
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = _Chain()
        chain.users += 1
        try:
            async with chain.lock:
                yield
        finally:
            chain.users -= 1
            if chain.users == 0:
                del self._chains[key]
