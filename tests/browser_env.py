"""What the browser tests share: Debian's Chromium, the playwright-core harness, a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BROWSER = Path(__file__).resolve().parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

needs_browser = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
    pytest.mark.skipif(not (BROWSER / "node_modules" / "playwright-core").exists() or not shutil.which("node"),
                       reason="needs node and playwright-core (cd tests/browser && npm ci)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(folder: Path, files: list[str], token: str) -> Iterator[str]:
    """`pushlang serve FILES --store state.db` in ``folder`` with the API token, on a free port: its base
    URL once /healthz answers; stopped at the end."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pushlang", "serve", *files, "--port", str(port), "--store",
                               "state.db"], cwd=folder, env={**os.environ, "PUSHLANG_API_TOKEN": token},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)
