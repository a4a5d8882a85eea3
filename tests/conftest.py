"""Fixtures the Redis tests share: a real redis-server per test module, flushed for each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis_server import redis_server


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
