"""Scale-out on Redis Streams (issue 7, acceptance 2): restarting Redis from its append-only file mid-run
(``appendfsync always``) loses nothing that was acknowledged.

The test runs its own redis-server (AOF on, no RDB) in a throwaway directory, ingests 20,000 generated
records, starts 2 worker processes, and once some batches are committed kills Redis with SIGKILL and
starts it again on the same port and directory, so that it loads the AOF. The workers reconnect and go
on. In the end: every entry acknowledged before the kill is still acknowledged, every output written
before the kill is still there, the decisions equal a single-process replay's, no send_id is decided
twice, every stream is fully acknowledged and nothing is dead-lettered."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import _free_port, require_redis

redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")

from test_scaleout import PARTITIONS, Workload, _check_outputs, _finish, _remaining, _start_worker  # noqa: E402

from pushlang.scaleout import keys  # noqa: E402 (after the skip)
from pushlang.scaleout.ingest import end_of_input, ingest  # noqa: E402

START_TIMEOUT = 20.0  # a loaded machine; loading the AOF of a 20k-record run takes well under a second
DOWNTIME = 1.5  # longer than the workers' leases (1 s): they expire while Redis is down


class AofRedis:
    """A redis-server with ``appendonly yes`` / ``appendfsync always`` that can be SIGKILLed and started
    again on the same port and directory (it then loads its AOF)."""

    def __init__(self, tmp: Path) -> None:
        self.binary, _ = require_redis()
        self.dir = tmp
        self.log = tmp / "redis.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Any:
        """Start the server, wait until it answers PING (not LOADING), return a new client."""
        args = [self.binary, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--logfile", str(self.log), "--daemonize", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.starts += 1
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        deadline = time.monotonic() + START_TIMEOUT
        error = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if client.ping():
                    return client
            except redis.ConnectionError as e:  # BusyLoadingError (the AOF is loading) is one too
                error = repr(e)
            time.sleep(0.05)
        client.close()
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"redis-server (start {self.starts}, port {self.port}) did not come up: "
                           f"{error}\n{tail}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path / "redis")
    server.dir.mkdir()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return Workload(tmp_path_factory.mktemp("aof20k"), 20_000, 2_000)


class Acknowledged:
    """What the group ``workers`` of one partition has acknowledged: every entry up to last-delivered-id
    that is not pending. Consumed entries may have been trimmed from the stream since, so an id counts
    as acknowledged by that rule, not by being still in the stream."""

    def __init__(self, last: tuple[int, int], pending: set[bytes]) -> None:
        self.last, self.pending = last, pending

    def __contains__(self, eid: bytes) -> bool:
        return _sid(eid) <= self.last and eid not in self.pending


def _sid(eid: bytes) -> tuple[int, int]:
    ms, _, seq = eid.partition(b"-")
    return int(ms), int(seq or 0)


def _acknowledged(client: Any) -> dict[int, Acknowledged]:
    """Per partition, one MULTI/EXEC, so each view is consistent."""
    acked: dict[int, Acknowledged] = {}
    for p in range(PARTITIONS):
        stream = keys.stream_key(p)
        pipe = client.pipeline(transaction=True)
        pipe.xinfo_groups(stream)
        pipe.xpending_range(stream, keys.WORKER_GROUP, min="-", max="+", count=1_000_000)
        try:
            groups, pending = pipe.execute()
        except redis.ResponseError as e:  # no group yet: nothing delivered, nothing acknowledged
            assert "NOGROUP" in str(e), e
            acked[p] = Acknowledged((0, 0), set())
            continue
        acked[p] = Acknowledged(_sid(groups[0]["last-delivered-id"]), {e["message_id"] for e in pending})
    return acked


def _outputs(client: Any) -> dict[int, list[tuple[bytes, dict[bytes, bytes]]]]:
    return {p: client.xrange(keys.out_key(p)) for p in range(PARTITIONS)}


def test_redis_restarted_from_its_aof_mid_run_loses_nothing_acknowledged(aof_redis: AofRedis,
                                                                          workload: Workload) -> None:
    w = workload
    client = aof_redis.start()
    procs: list[subprocess.Popen[str]] = []
    try:
        accepted, rejected = ingest(client, w.lines, PARTITIONS)
        end_of_input(client, PARTITIONS, w.until)
        assert (accepted, rejected) == (len(w.lines), [])
        total = _remaining(client)
        entries = {p: [eid for eid, _ in client.xrange(keys.stream_key(p))] for p in range(PARTITIONS)}
        # idle_exit: generous, so a worker outlives the outage and the reconnection of the other (loading the
        # AOF can take seconds on a busy machine: a worker waits that long before it calls Redis gone)
        procs = [_start_worker(client, w, f"a{i}", idle_exit=12.0, batch=50) for i in range(2)]

        # wait until some batches are committed (outputs written, entries acknowledged)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(client.xlen(keys.out_key(p)) for p in range(PARTITIONS)) > 0 and _remaining(client) < total:
                break
            assert all(p.poll() is None for p in procs), _finish(procs)
            time.sleep(0.01)
        else:
            pytest.fail(f"no batch committed in 30 s: {_finish(procs, timeout=15)}")
        acked_before = _acknowledged(client)
        outputs_before = _outputs(client)
        left = _remaining(client)
        client.close()

        aof_redis.kill9()
        assert left > 0, "the run was over before Redis was killed"
        n_acked = sum(eid in acked_before[p] for p, ids in entries.items() for eid in ids)
        n_out = sum(len(o) for o in outputs_before.values())
        time.sleep(DOWNTIME)
        client = aof_redis.start()  # same port and directory: loads the AOF
        acked_after = _acknowledged(client)
        outputs_after = _outputs(client)

        # nothing acknowledged before the kill was lost: still acknowledged, its outputs still there
        for p in range(PARTITIONS):
            lost = {eid for eid in entries[p] if eid in acked_before[p] and eid not in acked_after[p]}
            assert not lost, f"partition {p}: {len(lost)} acknowledged entries are unacknowledged after restart"
            before = outputs_before[p]
            assert outputs_after[p][:len(before)] == before, f"partition {p}: outputs lost or changed"
        assert sum(eid in acked_after[p] for p, ids in entries.items() for eid in ids) >= n_acked > 0

        logs = _finish(procs, timeout=45)
        print(f"\nkilled Redis with {n_acked} of {total} entries acknowledged, {n_out} outputs, "
              f"{left} entries left; restarted from the AOF after {DOWNTIME}s\n" + "\n".join(logs))
        assert all(p.returncode == 0 for p in procs), logs
        # the decisions are a replay's (none lost, none twice), no send_id twice, all acknowledged,
        # no dead letters
        _check_outputs(client, w)
        assert "DB loaded from append only file" in aof_redis.log.read_text(errors="replace")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        client.close()
