"""What every delivery channel shares: how a delivery ended, and the halt of a channel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
        """Its answer came and another attempt follows after a wait: nothing is out meanwhile."""


def backoff(attempt: int, retry_after: float | None, *, base: float, ceiling: float, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After when it gave one,
    else exponential from ``base`` with "equal jitter" (``jitter`` in [0, 1))."""
    if retry_after is not None:
        return min(retry_after, ceiling)
    top: float = min(ceiling, base * 2.0 ** (attempt - 1))
    return top / 2 + jitter * top / 2


class Halt:
    """A channel's credentials were rejected: stop it once, tell the operator once, until an
    operator clears it (a reload, or ``POST /v1/channels/NAME/resume`` on `pushlang serve`)."""

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

    def clear(self) -> bool:
        """Resume the channel; whether it was halted."""
        was, self.why = self.why, None
        if was is not None:
            log.warning("%s channel resumed (it was halted: %s)", self.channel, was)
        return was is not None


class Probe:
    """Until a service has answered one request, that request goes out alone: a rejection of our
    credentials then costs one attempt, not one per user. The probe's first *answer* (whatever it
    is) opens the gate: its retries, backoff and Retry-After never hold the others.

    ``first = await probe.turn()``; the one that gets True calls ``probe.release()`` once it has an
    answer (and in any case when it is done)."""

    def __init__(self) -> None:
        self._probing = False
        self._answered = asyncio.Event()

    @property
    def answered(self) -> bool:
        """The service has answered once: requests no longer wait for the probe."""
        return self._answered.is_set()

    async def turn(self) -> bool:
        """True for the one request that probes; the others wait here until it has an answer."""
        if self._answered.is_set():
            return False
        if not self._probing:
            self._probing = True
            return True
        await self._answered.wait()
        return False

    def release(self) -> None:
        self._probing = False
        self._answered.set()
