"""What the browser tests share: Debian's Chromium, the playwright-core harness, a free port."""

from __future__ import annotations

import os
import shutil
import socket
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
