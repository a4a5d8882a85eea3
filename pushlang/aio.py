"""The event loop every pushlang host runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under the asyncio API) roughly halves the event loop's share of a push: it is a
dependency on Linux and macOS, and everything still runs on the standard loop without it. Making a
loop also raises the garbage collector's first threshold (see ``_tune_gc``).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop as _uvloop
except ImportError:  # Windows, or an install without it
    _uvloop = None  # type: ignore[assignment]

T = TypeVar("T")


GC_FIRST_THRESHOLD = 50_000


def new_event_loop() -> asyncio.AbstractEventLoop:
    _tune_gc()
    if _uvloop is not None:
        return _uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the loop of ``new_event_loop``."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def loop_name() -> str:
    """What ``new_event_loop`` makes, for reports: "uvloop 0.23.0" or "asyncio"."""
    if _uvloop is None:
        return "asyncio"
    return f"uvloop {getattr(_uvloop, '__version__', '')}".rstrip()


def _tune_gc() -> None:
    """A push allocates a few hundred short-lived objects (futures, requests, responses, buffers);
    at the collector's default first threshold (700) it runs every few pushes, about 7% of a
    sender's CPU. A process that runs the event loop raises that threshold once (never lowers it)."""
    first, second, third = gc.get_threshold()
    if first < GC_FIRST_THRESHOLD:
        gc.set_threshold(GC_FIRST_THRESHOLD, second, third)
