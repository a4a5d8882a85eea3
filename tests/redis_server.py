"""A real redis-server on loopback for the tests (DESIGN.md "Tests against real peers").

``redis_server(tmp)`` starts Debian's ``redis-server`` on a free 127.0.0.1 port with a throwaway
directory and no persistence, waits until it answers PING, yields a ``redis.Redis`` client and
stops the server. Without ``redis-server`` on PATH or the ``redis`` package, the test is skipped
with the reason (``.ci/run`` installs both).

Use it from a fixture::

    @pytest.fixture(scope="session")
    def redis_client(tmp_path_factory):
        with redis_server(tmp_path_factory.mktemp("redis")) as client:
            yield client
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(reason: str) -> NoReturn:
    """Skip the test for what the machine lacks; in CI (which installs everything) fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"in CI: {reason}")
    pytest.skip(reason)


def require_redis() -> tuple[str, Any]:
    """The redis-server binary and the ``redis`` module, or skip the test saying what is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        # A developer's machine may lack Redis; CI never does (.ci/run installs redis-server): there a
        # missing server is a failure, not a skip.
        missing("redis-server is not on PATH (apt-get install redis-server; .ci/run installs it)")
    try:
        import redis
    except ImportError:
        # Only without the test extra (pip install -e '.[test]' brings redis-py).
        missing("the redis package is not installed (pip install 'redis>=5')")
    return binary, redis


@contextlib.contextmanager
def redis_server(tmp: Path, *extra_args: str) -> Iterator[Any]:
    """A running redis-server in ``tmp``; yields a ``redis.Redis`` client (bytes responses)."""
    binary, redis = require_redis()
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "redis.log"
    last_error = ""
    for _attempt in range(3):  # the free port may be taken between probing and binding
        port = _free_port()
        args = [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(tmp), "--logfile", str(log), "--daemonize", "no", *extra_args]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        deadline = time.monotonic() + START_TIMEOUT
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                up = bool(client.ping())
                break
            except redis.ConnectionError as e:
                last_error = str(e)
                time.sleep(0.05)
        if up:
            try:
                yield client
            finally:
                client.close()
                stop_process(proc)
            return
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        last_error = (log.read_text(errors="replace")[-2000:] if log.exists() else "") or last_error
    raise RuntimeError(f"redis-server did not start: {last_error}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server, and SIGKILL it if it has not exited within 10 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
