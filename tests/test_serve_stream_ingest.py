"""`pushlang serve --redis`: the ingest API of scale-out appends records to the partition streams."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis_server import redis_server

from pushlang.scaleout.ingest import StreamIngest
from pushlang.scaleout.keys import partition_of, stream_key

TOKEN = "stream-token"


def test_records_land_in_their_partition_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    with redis_server(tmp_path / "redis") as client:
        port = client.connection_pool.connection_kwargs["port"]
        service = StreamIngest(f"redis://127.0.0.1:{port}/0", partitions=8)

        async def main() -> None:
            async with TestClient(TestServer(service.app(), host="127.0.0.1")) as http:
                records: list[Any] = [{"user": f"u{n}", "ts": "2026-12-01T08:00:00Z", "name": "Signed Up"}
                                      for n in range(20)]
                body = "\n".join([*map(json.dumps, records[:10]), "{broken", *map(json.dumps, records[10:])])
                r = await http.post("/v1/records", data=body, headers={"Authorization": f"Bearer {TOKEN}"})
                result = await r.json()
                assert r.status == 200 and result["accepted"] == 20
                assert [x["index"] for x in result["rejected"]] == [10]
                assert (await http.post("/v1/records", data=body)).status == 401
                assert (await (await http.get("/healthz")).json())["ok"]

        asyncio.run(main())
        for n in range(20):
            entries = client.xrange(stream_key(partition_of(f"u{n}", 8)))
            assert any(json.loads(fields[b"r"])["user"] == f"u{n}" for _, fields in entries)
        assert sum(client.xlen(stream_key(p)) for p in range(8)) == 20


def test_the_live_checks_hold_on_the_scale_out_ingest_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record from the future is refused, one a little ahead is taken at the wall clock, and a
    subscription's endpoint must be a push service's (the same rules as `pushlang serve`)."""
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    with redis_server(tmp_path / "redis") as client:
        port = client.connection_pool.connection_kwargs["port"]
        service = StreamIngest(f"redis://127.0.0.1:{port}/0", partitions=1)
        now = time.time()

        async def main() -> None:
            async with TestClient(TestServer(service.app(), host="127.0.0.1")) as http:
                records = [{"user": "u1", "ts": now + 72 * 365 * 86400, "name": "Signed Up"},
                           {"user": "u1", "ts": now + 120, "name": "Signed Up"},
                           {"type": "subscribe", "user": "u1", "ts": now, "platform": "chrome",
                            "endpoint": "https://10.0.0.5/admin", "keys": {"p256dh": "BPk", "auth": "a1"}}]
                r = await http.post("/v1/records", json=records, headers={"Authorization": f"Bearer {TOKEN}"})
                result = await r.json()
                assert result["accepted"] == 1 and [x["index"] for x in result["rejected"]] == [0, 2]
                assert "ahead of the service's clock" in result["rejected"][0]["reason"]

        asyncio.run(main())
        ((_, fields),) = client.xrange(stream_key(0))
        assert now - 1 <= json.loads(fields[b"r"])["ts"] <= time.time()  # taken at the wall clock
