"""A real Redis Cluster on loopback for the tests: three masters, each its own ``redis-server`` process
with ``--cluster-enabled yes`` and an append-only file, joined with ``redis-cli --cluster create``.

``redis_cluster(tmp)`` yields a :class:`Cluster`: its nodes' ports, a ``url`` any of the project's
commands take, and ``kill(i)`` / ``restart(i)`` to SIGKILL one master's process and start it again from
its AOF (same port, same node id: ``nodes.conf`` is kept). Skips, saying why, without ``redis-server``,
``redis-cli`` or the ``redis`` package (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis_server import _free_port, missing, require_redis, stop_process

START_TIMEOUT = 20.0


class Cluster:
    def __init__(self, tmp: Path, binary: str, ports: list[int]) -> None:
        self.tmp, self.binary, self.ports = tmp, binary, ports
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(ports)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node_dir(self, i: int) -> Path:
        return self.tmp / f"node{i}"

    def start(self, i: int) -> None:
        d = self.node_dir(i)
        d.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.ports[i]), "--bind", "127.0.0.1", "--dir", str(d),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--logfile", str(d / "redis.log"), "--daemonize", "no"]
        self.procs[i] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait_ping(i)

    def _wait_ping(self, i: int) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.ports[i], socket_timeout=5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    time.sleep(0.05)
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        log = self.node_dir(i) / "redis.log"
        raise RuntimeError(f"cluster node {i} did not start: {log.read_text(errors='replace')[-2000:]}")

    def wait_ok(self) -> None:
        """Until every node says ``cluster_state:ok`` (all slots served)."""
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            states = []
            for port in self.ports:
                client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
                try:
                    states.append(_state_ok(client))
                except redis.ConnectionError:
                    states.append(False)
                finally:
                    client.close()
            if all(states):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs[i] = None

    def restart(self, i: int) -> None:
        self.start(i)
        self.wait_ok()

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None:
                stop_process(proc)


def _cluster_port() -> int:
    """A free port a cluster node can use: its bus listens 10000 higher, so at most 55535."""
    while (port := _free_port()) > 55535:
        pass
    return port


def _state_ok(client: Any) -> bool:
    info = client.cluster("INFO")  # parsed into a dict by redis-py
    state = info.get("cluster_state") if isinstance(info, dict) else None
    return (state.decode() if isinstance(state, bytes) else state) == "ok"


@contextlib.contextmanager
def redis_cluster(tmp: Path, masters: int = 3) -> Iterator[Cluster]:
    binary, _redis = require_redis()
    cli = shutil.which("redis-cli")
    if cli is None:
        missing("redis-cli is not on PATH (it comes with Debian's redis-tools; .ci/run installs it)")
    cluster = Cluster(tmp, binary, [_cluster_port() for _ in range(masters)])
    try:
        for i in range(masters):
            cluster.start(i)
        created = subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in cluster.ports],
                                  "--cluster-replicas", "0", "--cluster-yes"],
                                 capture_output=True, text=True, timeout=60)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr[-2000:]}")
        cluster.wait_ok()
        yield cluster
    finally:
        cluster.stop()
