"""Dispatch workers under faults (issue 14), against real redis-servers (one node, and a 3-master
cluster), the loopback Web Push service and real processes: a kill -9 under load leaves `interrupted`
only what was on the wire; a Redis connection cut at the commit loses and doubles nothing; a push
service slower than the claim timeout does not get a live dispatcher's entries claimed; a stale
backlog is recorded `expired`, not pushed; idle dispatchers wait in Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.webpush_service import Reply, WebPushService

from pushlang.dispatch.keys import generate

pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")

from dispatch_env import CAMPAIGN, PARTITIONS, Setup, arrived, eventually, pushed, put, records, run, unacked
from tcp_proxy import tcp_proxy

from pushlang.scaleout.dispatch import CHUNK, DispatchWorker
from pushlang.scaleout.keys import partition_of, sent_key

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    public = generate(tmp_path / "vapid_private.pem")
    with WebPushService(application_server_key=public) as svc:
        yield Setup(tmp_path, svc)


def _users(setup: Setup, n: int, prefix: str = "u") -> dict[str, list[Any]]:
    return {f"{prefix}{i}": [setup.svc.new_subscription("chrome")] for i in range(n)}


def _outcomes(client: Any) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = {}
    for o in records(client):
        found.setdefault(o["send_id"], []).append((o["outcome"], o["reason"]))
    return found


def test_kill_9_of_a_dispatcher_leaves_interrupted_only_what_was_on_the_wire(
        client: Any, push_project: tuple[Path, WebPushService]) -> None:
    """Item 4 (a): `pushlang dispatch` killed with SIGKILL under load, another dispatcher takes over:
    every send is delivered exactly once or `failed: interrupted`, and the interrupted ones are at most
    what one dispatcher has on the wire (its chunk), each of them pushed at most once."""
    folder, svc = push_project
    setup = Setup(folder, svc, key=folder / "vapid.pem")
    svc.set_default(Reply(201, delay=0.05))  # a push service that takes its time: requests pile up on the wire
    jobs = setup.jobs(_users(setup, 1500))
    put(client, jobs)
    url = "redis://{host}:{port}/0".format(**client.connection_pool.connection_kwargs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "pushlang", "dispatch", "cart.push", "--redis", url,
                             "--partitions", str(PARTITIONS), "--id", "doomed"], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        eventually(lambda: len(svc.requests) >= 400 or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
    before = sum(arrived(svc).values())

    (survivor,) = run(client, setup, workers=1, claim_idle_ms=500, idle_exit=1.5)

    outcomes = _outcomes(client)
    assert sorted(outcomes) == sorted(j.send_id for j in jobs)  # every send has its outcome …
    assert all(len(o) == 1 for o in outcomes.values())  # … one
    sent = arrived(svc)
    assert max(sent.values()) == 1  # nothing pushed twice
    delivered = {s for s, o in outcomes.items() if o == [("delivered", None)]}
    interrupted = {s for s, o in outcomes.items() if o == [("failed", "interrupted")]}
    assert delivered | interrupted == set(outcomes)
    assert all(sent[s] == 1 for s in delivered)
    assert len(interrupted) <= CHUNK, len(interrupted)
    print(f"\nkill -9 after {before} requests: {len(delivered)} delivered, {len(interrupted)} interrupted "
          f"({sum(1 for s in interrupted if sent[s])} of them had reached the push service); "
          f"the survivor claimed {survivor.stats['claimed']}")
    assert unacked(client) == 0


def test_a_connection_cut_during_the_commit_loses_nothing_and_doubles_nothing(client: Any, setup: Setup) -> None:
    """Item 4 (b): the dispatcher's Redis connection is cut while its requests are answered and Redis
    stays unreachable for a while: the commit is retried until it goes through; every send is delivered
    once and recorded once, none `interrupted`."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    svc = setup.svc
    svc.set_default(Reply(201, delay=1.0))  # the answers come while Redis is away
    jobs = setup.jobs(_users(setup, 20))
    put(client, jobs)
    kwargs = client.connection_pool.connection_kwargs
    with tcp_proxy(kwargs["host"], kwargs["port"]) as proxy:
        # a client that gives up after one retry: the cut reaches the dispatcher instead of being hidden
        near = redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=5, retry=Retry(NoBackoff(), 1))
        worker = DispatchWorker(near, setup.plan, setup.settings, PARTITIONS, "d0", claim_idle_ms=1000)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                worker.run(idle_exit=2.0)
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        eventually(lambda: len(svc.requests) == len(jobs))  # all on the wire, their answers held back
        proxy.cut(down_for=2.5)
        thread.join(timeout=60)
        near.close()
    assert not thread.is_alive() and not errors, errors
    outcomes = _outcomes(client)
    assert outcomes == {j.send_id: [("delivered", None)] for j in jobs}
    assert pushed(svc) == Counter({(j.send_id, j.targets[0].endpoint.rsplit("/", 1)[1]): 1 for j in jobs})
    assert worker.stats["commit_retries"] > 0 and worker.stats["interrupted"] == 0, worker.stats
    print(f"\n{worker.stats['commit_retries']} commit attempts failed during the outage, then all "
          f"{worker.stats['delivered']} records committed")
    assert unacked(client) == 0


def test_a_push_service_slower_than_the_claim_timeout_does_not_get_entries_claimed(client: Any, setup: Setup) -> None:
    """Item 4 (c): each request takes 1.5 s, the claim timeout is 0.6 s: the dispatcher that holds the
    entries keeps them (their idle time is refreshed), the other claims none, nothing is interrupted."""
    svc = setup.svc
    svc.set_default(Reply(201, delay=1.5))
    jobs = setup.jobs(_users(setup, 12))
    put(client, jobs)
    workers = run(client, setup, workers=2, claim_idle_ms=600, idle_exit=2.5)
    assert _outcomes(client) == {j.send_id: [("delivered", None)] for j in jobs}
    assert max(arrived(svc).values()) == 1 and len(svc.requests) == len(jobs)
    assert [w.stats["claimed"] for w in workers] == [0, 0]
    assert sum(w.stats["interrupted"] for w in workers) == 0
    assert unacked(client) == 0


def test_two_dispatchers_deliver_each_send_once_on_a_redis_cluster(tmp_path: Path, setup: Setup) -> None:
    """Item 6: a real 3-master Redis Cluster; a few hundred sends in the outboxes of every partition."""
    from redis_cluster import redis_cluster

    from pushlang.scaleout.connection import connect, is_cluster

    jobs = setup.jobs(_users(setup, 300))
    with redis_cluster(tmp_path / "cluster") as cluster:
        client = connect(cluster.url)
        assert is_cluster(client)
        try:
            put(client, jobs)
            workers = run(client, setup, workers=2, idle_exit=1.5)
            outcomes = _outcomes(client)
            assert unacked(client) == 0
        finally:
            client.close()
    assert outcomes == {j.send_id: [("delivered", None)] for j in jobs}
    assert max(arrived(setup.svc).values()) == 1 and len(setup.svc.requests) == len(jobs)
    assert all(w.stats["sends"] > 0 for w in workers), [w.stats for w in workers]


def test_a_stale_backlog_is_recorded_expired_not_pushed(client: Any, setup: Setup) -> None:
    """Item 7: sends that waited in ob:{p} longer than their ttl (2d) before any dispatcher ran are
    `failed: expired`, not pushed; the fresh ones are delivered; the outboxes are trimmed after."""
    from pushlang.scaleout.keys import outbox_key

    stale = setup.jobs(_users(setup, 8, "old"), hours_ago=50)
    fresh = setup.jobs(_users(setup, 8, "new"), hours_ago=1)
    put(client, stale + fresh)  # no dispatcher group exists yet
    (worker,) = run(client, setup, workers=1)
    outcomes = _outcomes(client)
    assert outcomes == {**{j.send_id: [("failed", "expired")] for j in stale},
                        **{j.send_id: [("delivered", None)] for j in fresh}}
    assert sorted(arrived(setup.svc)) == sorted(j.send_id for j in fresh)
    assert worker.stats["expired"] == len(stale)
    assert all(client.xlen(outbox_key(p)) <= 1 for p in range(PARTITIONS))


def test_a_send_marker_lives_as_long_as_its_send_can_be_pushed(tmp_path: Path) -> None:
    """Item 7: a send with a 4-week ttl could be produced again (a reprocessed batch) and still be
    within its ttl after 7 days: its marker must outlive that, or the copy would be pushed twice."""
    from redis_server import redis_server

    public = generate(tmp_path / "vapid_private.pem")
    with WebPushService(application_server_key=public) as svc, redis_server(tmp_path / "redis") as client:
        setup = Setup(tmp_path, svc, CAMPAIGN.replace("ttl 2d", "ttl 4w"))
        jobs = setup.jobs(_users(setup, 3), hours_ago=2)
        put(client, jobs)
        run(client, setup, workers=1)
        lives = [client.ttl(sent_key(partition_of(j.user, PARTITIONS), j.send_id)) for j in jobs]
    assert all(life > 28 * 86400 - 3 * 3600 for life in lives), lives  # its expiry (28d after the decision) + 1d
    assert len(svc.requests) == 3


def test_an_idle_dispatcher_waits_in_redis(client: Any, setup: Setup) -> None:
    """Item 10: an idle dispatcher blocks in XREADGROUP: about one read a second, not a poll loop."""
    client.config_resetstat()
    worker = DispatchWorker(client, setup.plan, setup.settings, PARTITIONS, "idle")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    try:
        def reads() -> int:
            stats: Any = client.info("commandstats")
            return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))

        eventually(lambda: reads() > PARTITIONS)  # its own backlog looked at (one read per partition), then waiting
        first, started = reads(), time.monotonic()
        time.sleep(3.0)  # the window the reads are counted in
        per_second = (reads() - first) / (time.monotonic() - started)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert per_second <= 2.0, per_second
    print(f"\nidle: {per_second:.1f} XREADGROUP/s")
