"""Scale-out on Redis Streams (issue 7) against a real redis-server: worker processes over partitioned
streams decide exactly what a single-process replay decides, also when one is killed with SIGKILL
mid-run or a read's answer is lost; a record that keeps failing is dead-lettered."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pushlang import plan
from pushlang.compiler import compile_paths
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import decode_record
from pushlang.runtime.replay import replay
from pushlang.runtime.store import MemoryStore

redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")

from tcp_proxy import tcp_proxy  # noqa: E402

from pushlang.scaleout import keys, streams, worker  # noqa: E402 (after the skip)
from pushlang.scaleout.connection import connect  # noqa: E402
from pushlang.scaleout.ingest import collect_outputs, end_of_input, ingest  # noqa: E402
from pushlang.scaleout.keys import partition_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 16


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_replay", ROOT / "bench" / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Workload:
    def __init__(self, tmp: Path, records: int, users: int) -> None:
        bench = _bench()
        self.campaigns = tmp / "campaigns.push"
        self.campaigns.write_text(bench.campaigns_text(), encoding="utf-8")
        self.records = tmp / "records.jsonl"
        bench.generate(self.records, records, users)
        self.lines = self.records.read_bytes().splitlines()
        self.until = max(decode_record(line).ts for line in self.lines)
        result = compile_paths([str(self.campaigns)])
        assert result.plan is not None, result.diagnostics
        self.plan: plan.Plan = result.plan
        self.expected = _replayed(self.plan, self.lines, self.until)


def _canonical(out: dict[str, Any]) -> str:
    return json.dumps(out, sort_keys=True)


def _replayed(compiled: plan.Plan, lines: list[bytes], until: int | None = None) -> Counter[str]:
    """A single-process replay's outputs (canonical JSON), to the last record's instant unless ``until``."""
    outputs: list[Output] = []
    if until is None:
        until = max(decode_record(line).ts for line in lines)
    replay(compiled, lines, MemoryStore(), outputs.append, until=until)
    return Counter(_canonical(msgspec.json.decode(msgspec.json.encode(o))) for o in outputs)


@pytest.fixture(scope="module")
def workload_20k(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return Workload(tmp_path_factory.mktemp("w20k"), 20_000, 2_000)


def _url(client: Any) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/0"


def _start_worker(client: Any, w: Workload, name: str, *, idle_exit: float, lease_ms: int = 1000,
                  batch: int = 200) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "pushlang", "worker", str(w.campaigns), "--redis", _url(client),
           "--partitions", str(PARTITIONS), "--id", name, "--lease-ms", str(lease_ms), "--batch", str(batch),
           "--idle-exit", str(idle_exit), "--clock", "records"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _remaining(client: Any) -> int:
    """Entries not yet acknowledged: never delivered (lag) plus pending, over every partition."""
    total = 0
    for p in range(PARTITIONS):
        groups = client.xinfo_groups(keys.stream_key(p)) if client.exists(keys.stream_key(p)) else []
        if not groups:
            total += client.xlen(keys.stream_key(p))
            continue
        g = groups[0]
        # never delivered: the entries after last-delivered-id (the consumed ones before it may be trimmed)
        undelivered = client.xrange(keys.stream_key(p), min=b"(" + g["last-delivered-id"])
        total += int(g["pending"]) + len(undelivered)
    return total


def _check_outputs(client: Any, w: Workload) -> list[dict[str, Any]]:
    outputs = collect_outputs(client, PARTITIONS)
    got = Counter(_canonical(o) for o in outputs)
    missing, extra = w.expected - got, got - w.expected
    assert not missing and not extra, (f"{sum(missing.values())} missing, {sum(extra.values())} extra; "
                                       f"e.g. missing {list(missing)[:2]} extra {list(extra)[:2]}")
    sends = [o["send_id"] for o in outputs if o["outcome"] == "send"]
    assert len(sends) == len(set(sends)), "a send_id was decided twice"
    assert _remaining(client) == 0
    assert all(client.xlen(keys.dead_key(p)) == 0 for p in range(PARTITIONS))
    return outputs


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 60) -> list[str]:
    logs = []
    for proc in procs:
        _out, err = proc.communicate(timeout=timeout)
        logs.append(err)
    return logs


def test_ingest_rejects_bad_lines_with_their_numbers(client: Any) -> None:
    lines = [b'{"user": "a", "ts": 1796112000, "name": "X"}', b"", b"not json",
             b'{"user": "b", "ts": 1796112001, "name": "Y"}', b'{"ts": 1796112002, "name": "Z"}']
    accepted, rejected = ingest(client, lines, PARTITIONS, end_at_last=True)
    assert accepted == 2
    assert [r.line for r in rejected] == [3, 5]
    total = sum(client.xlen(keys.stream_key(p)) for p in range(PARTITIONS))
    assert total == 2 + PARTITIONS  # the records and one end marker per partition
    ends = [client.xrange(keys.stream_key(p))[-1][1] for p in range(PARTITIONS)]
    assert all(e == {b"end": b"1796112001000000"} for e in ends)


def _fleet(client: Any, w: Workload, prefix: str, *, batch: int = 200) -> list[subprocess.Popen[str]]:
    """Three worker processes, started before the records are ingested, once each holds a share of the
    partitions (a worker that starts first on a loaded machine would otherwise do all the work: a fixed
    wait for the rebalance was not always long enough under load)."""
    procs = [_start_worker(client, w, f"{prefix}{i}", idle_exit=6, batch=batch) for i in range(3)]
    deadline = time.monotonic() + 60
    while True:
        owners = [client.get(keys.lease_key(p)) for p in range(PARTITIONS)]
        if None not in owners and len(set(owners)) == 3:
            return procs
        assert time.monotonic() < deadline, f"the workers did not share the partitions: {owners}"
        time.sleep(0.1)


def _equivalence(client: Any, w: Workload, label: str) -> None:
    procs = _fleet(client, w, "w")
    start = time.perf_counter()
    accepted, rejected = ingest(client, w.lines, PARTITIONS)
    end_of_input(client, PARTITIONS, w.until)
    assert (accepted, rejected) == (len(w.lines), [])
    ingested = time.perf_counter() - start
    logs = _finish(procs)
    elapsed = time.perf_counter() - start
    assert all(p.returncode == 0 for p in procs), logs
    outputs = _check_outputs(client, w)
    worked = [log for log in logs if " 0 records" not in log]
    assert len(worked) >= 2, logs  # the partitions were shared
    print(f"\n{label} records, 3 worker processes: {len(outputs)} decisions = replay's; ingest {ingested:.1f}s, "
          f"total {elapsed:.1f}s from the ingest on, incl. the 6s idle exit\n" + "".join(logs))


def test_equivalence_20k_records_3_worker_processes(client: Any, workload_20k: Workload) -> None:
    _equivalence(client, workload_20k, "20k")


def test_equivalence_100k_records_3_worker_processes(client: Any, tmp_path: Path) -> None:
    _equivalence(client, Workload(tmp_path, 100_000, 10_000), "100k")


def test_kill_9_a_worker_mid_run_loses_and_duplicates_nothing(client: Any, workload_20k: Workload) -> None:
    w = workload_20k
    ingest(client, w.lines, PARTITIONS)
    end_of_input(client, PARTITIONS, w.until)
    total = _remaining(client)
    procs = [_start_worker(client, w, f"k{i}", idle_exit=4.0, batch=50) for i in range(3)]
    deadline = time.monotonic() + 30
    while _remaining(client) > total * 0.85 and time.monotonic() < deadline:
        time.sleep(0.01)
    # the victim: the worker holding the most leases, mid-run (some of its batches are committed)
    holders = Counter(client.get(keys.lease_key(p)) for p in range(PARTITIONS))
    name = max((h for h in holders if h is not None), key=lambda h: holders[h]).decode()
    victim = procs[int(name[1:])]
    victim.send_signal(signal.SIGKILL)
    left = _remaining(client)
    victim.wait()
    procs.remove(victim)
    assert left > 0, "the run was over before the kill"
    print(f"\nkilled {name} holding {holders[name.encode()]} partitions with {left} of {total} entries left")
    logs = _finish(procs)
    print("\n".join(logs))
    assert all(p.returncode == 0 for p in procs), logs
    _check_outputs(client, w)
    taken = sum(int(line.split(" partitions taken")[0].rsplit(" ", 1)[1])
                for log in logs for line in log.splitlines() if "partitions taken" in line)
    assert taken >= PARTITIONS, logs  # the survivors took the victim's partitions too


def test_a_record_that_keeps_failing_is_dead_lettered(client: Any, workload_20k: Workload,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    w = workload_20k
    lines = w.lines[:3000]
    poison = decode_record(lines[1500])
    original = worker.Engine.feed

    def feed(self: Any, record: Any) -> None:
        if record == poison:
            raise RuntimeError("boom")
        original(self, record)

    monkeypatch.setattr(worker.Engine, "feed", feed)
    ingest(client, lines, PARTITIONS, end_at_last=True)
    solo = worker.Worker(client, w.plan, "solo", PARTITIONS, lease_ms=1000, batch=100, clock="records")
    thread = threading.Thread(target=solo.run, kwargs={"idle_exit": 0.5})
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    p = partition_of(poison.user, PARTITIONS)
    letters = client.xrange(keys.dead_key(p))
    assert len(letters) == 1 and letters[0][1][b"r"] == lines[1500] and b"boom" in letters[0][1][b"error"]
    assert solo.stats["dead_letters"] == 1
    assert _remaining(client) == 0
    # everything else decided as a replay without the poison record
    expected = _replayed(w.plan, lines[:1500] + lines[1501:], until=max(decode_record(line).ts for line in lines))
    assert Counter(_canonical(o) for o in collect_outputs(client, PARTITIONS)) == expected


def test_a_read_whose_answer_was_lost_is_claimed_again_not_stranded(client: Any, workload_20k: Workload) -> None:
    """Redis carries out a worker's XREADGROUP but its answer never arrives (Redis killed between the two,
    a connection cut): the entries are pending under the worker's name, and it has not seen them. They
    are claimed again and applied in stream order, before anything read after them: the worker's client
    does not quietly send the read again (which would go on past them and strand them)."""
    w = workload_20k
    lines = w.lines[:3000]
    ingest(client, lines, PARTITIONS, end_at_last=True)
    kw = client.connection_pool.connection_kwargs
    with tcp_proxy(kw["host"], kw["port"]) as proxy:
        near = connect(f"redis://127.0.0.1:{proxy.port}/0")  # the client every worker process uses
        proxy.lose_reply(b"XREADGROUP")
        solo = worker.Worker(near, w.plan, "solo", PARTITIONS, lease_ms=1000, batch=100, clock="records")
        thread = threading.Thread(target=solo.run, kwargs={"idle_exit": 1.0})
        thread.start()
        thread.join(60)
        near.close()
    assert not thread.is_alive()
    assert proxy.lost == 1
    assert _remaining(client) == 0, "entries left pending or unread"
    assert Counter(_canonical(o) for o in collect_outputs(client, PARTITIONS)) == _replayed(w.plan, lines)


def test_entries_a_past_life_claimed_are_claimed_again_one_by_one(client: Any, workload_20k: Workload) -> None:
    """A worker lost its partitions (a Redis error, an expired lease) while it applied, one per commit,
    the entries it had claimed from a dead worker: they are pending under its own name, delivered twice,
    and not in its memory. Taking the partitions again, it claims them one at a time, as before, down to
    the last: none is left pending while the end marker after them is applied."""
    w = workload_20k
    lines = w.lines[:3000]
    ingest(client, lines, PARTITIONS, end_at_last=True)
    stranded = 0
    for p in range(PARTITIONS):
        stream = keys.stream_key(p)
        client.xgroup_create(stream, keys.WORKER_GROUP, id="0")
        read = client.xreadgroup(keys.WORKER_GROUP, "dead", {stream: ">"}, count=15)  # the dead worker's batch
        ids = [eid for eid, _ in read[0][1]]
        client.xclaim(stream, keys.WORKER_GROUP, "solo", 0, ids)  # claimed by solo's past life: delivered twice
        stranded += len(ids)
        client.xgroup_delconsumer(stream, keys.WORKER_GROUP, "dead")
    solo = worker.Worker(client, w.plan, "solo", PARTITIONS, lease_ms=1000, batch=100, clock="records")
    thread = threading.Thread(target=solo.run, kwargs={"idle_exit": 1.0})
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert stranded == PARTITIONS * 15
    assert _remaining(client) == 0, "entries left pending or unread"
    assert Counter(_canonical(o) for o in collect_outputs(client, PARTITIONS)) == _replayed(w.plan, lines)


def test_trimming_keeps_every_entry_not_yet_acknowledged(client: Any) -> None:
    """trim_consumed removes what the group is done with and nothing a dead reader still holds."""
    ids = [client.xadd("ev:{trim}", {"r": f"{n}"}) for n in range(6)]
    client.xgroup_create("ev:{trim}", "workers", id="0")
    held = client.xreadgroup("workers", "dead", {"ev:{trim}": ">"}, count=2)[0][1]  # never acknowledged
    assert [eid for eid, _ in held] == ids[:2]
    read = client.xreadgroup("workers", "live", {"ev:{trim}": ">"}, count=3)[0][1]
    client.xack("ev:{trim}", "workers", *[eid for eid, _ in read])

    assert streams.trim_consumed(client, "ev:{trim}", "workers") == 0  # the oldest entry is still pending
    assert [eid for eid, _ in client.xrange("ev:{trim}")] == ids

    claimed = client.xautoclaim("ev:{trim}", "workers", "live", 0, start_id="0-0")[1]
    assert [eid for eid, _ in claimed] == ids[:2]  # the dead reader's entries, whole
    client.xack("ev:{trim}", "workers", *ids[:2])
    assert streams.trim_consumed(client, "ev:{trim}", "workers") == 4  # up to the last one delivered
    assert [eid for eid, _ in client.xrange("ev:{trim}")] == ids[4:]
    assert client.xreadgroup("workers", "live", {"ev:{trim}": ">"})[0][1][0][0] == ids[5]
    assert streams.trim_consumed(client, "ev:{trim}", "nobody") == 0  # no such group: nothing goes


def _through_the_fleet(client: Any, campaigns: Path, encoded: list[bytes], until: int,
                       prefix: str) -> list[dict[str, Any]]:
    """The records through 3 worker processes (small batches, so that partitions interleave), to the
    end marker at ``until``; every worker ends cleanly and more than one did work; the outputs."""
    w = type("W", (), {"campaigns": campaigns})()
    procs = _fleet(client, w, prefix, batch=20)  # type: ignore[arg-type]
    accepted, rejected = ingest(client, encoded, PARTITIONS)
    end_of_input(client, PARTITIONS, until)
    assert (accepted, rejected) == (len(encoded), [])
    logs = _finish(procs, timeout=120)
    assert all(p.returncode == 0 for p in procs), logs
    assert len([log for log in logs if " 0 records" not in log]) >= 2, logs  # the partitions were shared
    return collect_outputs(client, PARTITIONS)


THROTTLED = """
campaign flash "Flash sale" {
  platforms chrome
  on "Go"
  when {
    timezone "UTC"
    throttle 7 per minute
  }
  message {
    title "Flash sale"
    body "For @{user.id}"
  }
}
"""


def test_a_throttle_holds_across_3_workers(client: Any, tmp_path: Path) -> None:
    """SPEC §12.1 in scale-out: 600 users trigger a campaign throttled to 7 a minute within ten minutes,
    over 3 worker processes that share each period's counter in Redis. No minute ever holds more than
    7 sends, every throttled decision is made again, and once every delay has resolved the set of
    (user, campaign) sends equals a single replay's (which users waited may differ)."""
    import random

    rng = random.Random(15)
    campaigns = tmp_path / "campaigns.push"
    campaigns.write_text(THROTTLED, encoding="utf-8")
    start = 1796112000  # 2026-12-01T00:00:00Z
    lines = []
    users = [f"user{i:04d}" for i in range(600)]
    for user in users:
        lines.append(json.dumps({"type": "subscribe", "user": user, "ts": start, "platform": "chrome",
                                 "endpoint": f"https://push.example/{user}", "keys": {"p256dh": "k", "auth": "a"}}))
    # bursts: many users in the same seconds
    moments = sorted(start + rng.choice([5, 6, 65, 130, 300, 301, 599]) + rng.randrange(0, 3) for _ in users)
    lines += [json.dumps({"user": u, "ts": t, "name": "Go"}) for u, t in zip(rng.sample(users, len(users)), moments,
                                                                               strict=True)]
    encoded = [line.encode() for line in lines]
    until = (start + 3 * 3600) * 1_000_000  # 600 sends at 7 a minute need 86 minutes
    result = compile_paths([str(campaigns)])
    assert result.plan is not None, result.diagnostics
    single: list[Output] = []
    replay(result.plan, encoded, MemoryStore(), single.append, until=until)
    expected = {(o.user, o.campaign) for o in single if o.outcome == "send"}
    assert len(expected) == 600
    assert sum(o.reason == "throttle" for o in single) > 400

    outputs = _through_the_fleet(client, campaigns, encoded, until, "t")
    sends = [o for o in outputs if o["outcome"] == "send"]
    per_minute = Counter(o["at"][:16] for o in sends)
    assert max(per_minute.values()) <= 7, per_minute.most_common(3)
    assert {(o["user"], o["campaign"]) for o in sends} == expected
    delayed = {o["send_id"]: o["until"] for o in outputs if o["outcome"] == "delay"}
    made_again = {o["send_id"] for o in sends if o["send_id"] in delayed and o["at"] == delayed[o["send_id"]]}
    assert made_again == set(delayed), "a throttled decision was never made again"
    differ = {o["user"] for o in outputs if o["outcome"] == "delay"} ^ {o.user for o in single if o.outcome == "delay"}
    print(f"\n600 throttled sends over 3 workers: {len(per_minute)} minutes, at most {max(per_minute.values())} a "
          f"minute; {len(delayed)} delays (single replay: {sum(o.outcome == 'delay' for o in single)}); "
          f"{len(differ)} users delayed in one run and not the other")


TESTED = """
campaign spring "Spring launch" {
  platforms chrome
  send once at 2026-12-01 10:00
  when {
    timezone "UTC"
  }
  test 30% then winner by clicks after 1h
  message a 50% {
    title "Spring is here"
    body "New arrivals"
  }
  message b 50% {
    title "20% off spring"
    body "This week only"
  }
}
"""


def test_a_winner_test_over_3_workers_picks_the_single_replays_winner(client: Any, tmp_path: Path) -> None:
    """SPEC §12.4 in scale-out: the test group of 400 users is spread over 16 partitions and 3 worker
    processes; each partition puts its part of the tally in Redis when its clock reaches s + D, and the
    winner is chosen only when every part is in. The winner record (one, with its rates) and every
    user's variant equal a single replay's."""
    import random

    from pushlang.runtime.pipeline import bucket, in_test_group, send_id_for

    rng = random.Random(16)
    campaigns = tmp_path / "campaigns.push"
    campaigns.write_text(TESTED, encoding="utf-8")
    start, s = 1796104800, 1796119200  # 2026-12-01T06:00:00Z; the occurrence at 10:00
    users = [f"shopper{i:03d}" for i in range(400)]
    lines = [json.dumps({"type": "subscribe", "user": u, "ts": start, "platform": "chrome",
                         "endpoint": f"https://push.example/{u}", "keys": {"p256dh": "k", "auth": "a"}})
             for u in users]
    clicks = []
    for u in users:  # b's test sends are clicked twice as often as a's
        if in_test_group("spring", u, 30):
            b = bucket(f"spring:variant:{u}") >= 5000
            if rng.random() < (0.5 if b else 0.25):
                clicks.append((s + rng.randrange(60, 3600), u))
    lines += [json.dumps({"user": u, "ts": t, "name": "Push Clicked",
                          "props": {"send_id": send_id_for("spring", u, s * 1_000_000), "campaign": "spring"}})
              for t, u in sorted(clicks)]
    encoded = [line.encode() for line in lines]
    until = (s + 2 * 3600) * 1_000_000
    result = compile_paths([str(campaigns)])
    assert result.plan is not None, result.diagnostics
    single: list[Output] = []
    replay(result.plan, encoded, MemoryStore(), single.append, until=until)
    (expected_winner,) = [msgspec.to_builtins(o) for o in single if o.outcome == "winner"]
    expected_sends = {(o.user, o.variant, o.at) for o in single if o.outcome == "send"}
    assert len(expected_sends) == 400 and expected_winner["variant"] == "b"

    outputs = _through_the_fleet(client, campaigns, encoded, until, "x")
    winners = [o for o in outputs if o["outcome"] == "winner"]
    assert winners == [expected_winner]
    assert {(o["user"], o["variant"], o["at"]) for o in outputs if o["outcome"] == "send"} == expected_sends
    parts = client.hgetall(keys.winner_key("spring", s * 1_000_000))
    assert len(parts) == PARTITIONS  # every partition's part of the tally
    print(f"\nwinner over 3 workers and {PARTITIONS} partitions: {winners[0]['variant']} with rates "
          f"{winners[0]['rates']} (significant: {winners[0]['significant']}) = the single replay's; "
          f"{len(expected_sends)} sends, {sum(o['outcome'] == 'clicked' for o in outputs)} clicks")
