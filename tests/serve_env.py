"""What the tests of `pushlang serve` share: the service in process (aiohttp's test client) or as a
real subprocess, and waiting for what happens in the background."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from browser_env import free_port

from pushlang.service.app import LiveService

__all__ = ["eventually", "free_port", "serve_in_process", "start_serve"]

Body = Callable[[TestClient[Any, Any], LiveService], Awaitable[None]]


def serve_in_process(paths: list[str], store: Path, body: Body, *, clock: Callable[[], float] = time.time,
                     tick: float = 0.05) -> None:
    """Run ``body`` against a LiveService of ``paths`` (store ``store``) on a loopback port."""
    async def main() -> None:
        service = LiveService(paths, store_path=str(store), tick=tick, clock=clock)
        async with TestClient(TestServer(service.app(), host="127.0.0.1")) as client:
            await body(client, service)
    asyncio.run(main())


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Deliveries happen in the background: wait until ``check()`` is truthy, and return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return result


def start_serve(folder: Path, port: int, campaigns: str, token: str) -> subprocess.Popen[bytes]:
    """`pushlang serve CAMPAIGNS --store state.db` in ``folder`` (its pushlang.toml), once /healthz
    answers; its stdout and stderr together in ``proc.stdout``."""
    env = {**os.environ, "PUSHLANG_API_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "pushlang", "serve", campaigns, "--port", str(port),
                             "--store", "state.db"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the service did not start: {proc.stdout.read() if proc.stdout else b''!r}")
