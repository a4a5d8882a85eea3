"""What every delivery channel shares: how a delivery ended, and the halt of a channel."""

from __future__ import annotations

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
