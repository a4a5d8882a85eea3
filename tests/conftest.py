"""Fixtures the tests share: a real redis-server per test module, flushed for each test; a project
folder with VAPID keys and a user token secret beside the loopback Web Push service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.webpush_service import WebPushService
from redis_server import redis_server

from pushlang.dispatch.keys import generate
from pushlang.service.identity import TOKEN_HEADER, sign

TOKEN = "s3cret-token"
USER_TOKEN_SECRET = "test-user-token-secret-0123456789abcdef"


def user_token(user: str, secret: str = USER_TOKEN_SECRET, ttl: int = 3600) -> dict[str, str]:
    """The header a browser of ``user`` sends to /v1/browser/records (a token valid for ``ttl`` s)."""
    return {TOKEN_HEADER: sign(secret, user, int(time.time()) + ttl)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A redis-server on a free loopback port for the module (skips, saying why, without Redis)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as client:
        yield client


@pytest.fixture
def client(server: Any) -> Any:
    """The module's Redis, empty."""
    server.flushall()
    return server


@pytest.fixture
def push_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, WebPushService]]:
    """A project folder (the working directory) whose pushlang.toml has a VAPID key the loopback push
    service pins and ``[server] user_token_secret`` (its last table, so a test may append to it), with
    PUSHLANG_API_TOKEN set to ``TOKEN``; the test writes its campaigns there."""
    public = generate(tmp_path / "vapid.pem")
    (tmp_path / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n'
        f'user_token_secret = "{USER_TOKEN_SECRET}"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    with WebPushService(application_server_key=public) as push:
        yield tmp_path, push


# Whole modules that start real browsers, a real editor, Redis servers, crashing services or fuzzers: `slow`, so that
# `pytest -m "not slow"` is the quick run (the language, the runtime, the CLI, in-process services).
SLOW_MODULES = frozenset({
    "test_dashboard_browser", "test_dashboard_experiments_browser", "test_serve_browser", "test_service_worker", "test_repl_pty",
    "test_redis_store", "test_scaleout", "test_scaleout_aof", "test_scaleout_dispatch", "test_scaleout_dispatch_faults",
    "test_scaleout_worker", "test_scaleout_faults", "test_scaleout_ingest", "test_scenarios_worker",
    "test_service_crash", "test_forget", "test_serve_fuzz", "test_fuzz", "test_properties", "test_properties_delivery",
    "test_bench_dispatch_smoke", "test_bench_serve_memory_smoke", "test_wheel", "test_serve_hardening",
    "test_serve_identity", "test_stored_state", "test_apns_service", "test_webpush_service", "test_lsp_neovim",
    "test_bench_lsp_smoke", "test_replay_resume",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
