"""``pushlang diff --jobs 2``: the old version replayed in a worker process while the new one replays in
this one, and the report byte-identical to ``--jobs 1``.

The records are generated from a seed: a few hundred users in six zones, subscribed (most of them),
with bursts of carts and product views that two throttled live campaigns meet, a scheduled campaign
with two variants and a winner test by clicks (the clicks name the test sends' ids), and a config with
a global daily limit and ``min_gap``. The new version changes the throttles, a limit, a DND window,
the variants' weights and the config, so that every campaign differs and the winners may.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pushlang.cli import main
from pushlang.runtime import diff
from pushlang.runtime.instants import US, iso, parse_instant
from pushlang.runtime.pipeline import send_id_for

ROOT = Path(__file__).resolve().parent.parent
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Adelaide", "America/Sao_Paulo"]
PROMO_AT = "2026-12-02T10:00:00Z"  # the occurrence s of the winner test (UTC)

CAMPAIGNS = """campaign cart "Cart reminder" {
  platforms chrome, firefox
  on "Added To Cart" where event.price > 20
  unless "Charged" within 30m
  when {
    throttle CART_THROTTLE per minute
    dnd 22:00 to 07:00 delay
    limit CART_LIMIT per day
  }
  message {
    title "Still thinking?"
    body "@{event.product | default: 'Your cart'} is waiting"
  }
}

campaign viewed "Viewed product" {
  platforms chrome, firefox
  on "Viewed Product" where event.price > 50
  when {
    throttle VIEWED_THROTTLE per minute
    priority 10
    DND
  }
  message {
    title "Back in stock soon"
    body "We saved it for you"
  }
}

campaign promo "Winter sale" {
  platforms chrome, firefox
  send once at 2026-12-02 10:00
  when {
    timezone "UTC"
    throttle 40 per minute
  }
  test 40% then winner by clicks after 2h
  message a A_WEIGHT% {
    title "Winter sale"
    body "Everything must go"
  }
  message b B_WEIGHT% {
    title "Last days"
    body "Everything must go"
  }
}
"""

OLD = {"CART_THROTTLE": "2", "CART_LIMIT": "2", "VIEWED_THROTTLE": "3", "DND": "", "A_WEIGHT": "50",
       "B_WEIGHT": "50"}
NEW = {"CART_THROTTLE": "1", "CART_LIMIT": "1", "VIEWED_THROTTLE": "3", "DND": "dnd 21:00 to 09:00 discard",
       "A_WEIGHT": "30", "B_WEIGHT": "70"}
OLD_CONFIG = '[limits]\nglobal_per_user_per_day = 3\nmin_gap = "20m"\n'
NEW_CONFIG = '[limits]\nglobal_per_user_per_day = 2\nmin_gap = "45m"\n'


def write_versions(root: Path) -> tuple[Path, Path]:
    """The old and the new version, each a folder with its campaigns and its pushlang.toml."""
    folders = []
    for name, values, config in (("old", OLD, OLD_CONFIG), ("new", NEW, NEW_CONFIG)):
        text = CAMPAIGNS
        for key, value in values.items():
            text = text.replace(key, value)
        folder = root / name
        folder.mkdir()
        (folder / "shop.push").write_text(text, encoding="utf-8")
        (folder / "pushlang.toml").write_text(config, encoding="utf-8")
        folders.append(folder)
    return folders[0], folders[1]


def generate(path: Path, seed: int, users: int = 300) -> Path:
    """A log over three days from 2026-12-01: profiles and subscriptions first, then bursts of events
    (a burst: a few minutes in which many users act), and clicks on the winner test's sends."""
    rng = random.Random(seed)
    start = parse_instant("2026-12-01T00:00:00Z") // US
    ids = [f"u{n:03d}" for n in range(users)]
    records: list[tuple[int, dict[str, Any]]] = []
    for user in ids:
        records.append((start, {"type": "profile", "user": user, "props": {"timezone": rng.choice(ZONES)}}))
        if rng.random() < 0.9:
            platform = rng.choice(["chrome", "firefox"])
            records.append((start, {"type": "subscribe", "user": user, "platform": platform,
                                    "endpoint": f"https://push.example/{user}", "keys": {"p256dh": "P", "auth": "A"}}))
    for _ in range(40):  # bursts at random hours of the three days
        at = start + rng.randrange(3 * 86400 - 600)
        for _ in range(rng.randint(10, 60)):
            user, ts = rng.choice(ids), at + rng.randrange(300)
            r = rng.random()
            if r < 0.45:
                records.append((ts, {"user": user, "name": "Added To Cart",
                                     "props": {"price": rng.randint(5, 120), "product": rng.choice(["Lamp", "Chair"])}}))
            elif r < 0.85:
                records.append((ts, {"user": user, "name": "Viewed Product", "props": {"price": rng.randint(1, 100)}}))
            else:
                records.append((ts, {"user": user, "name": "Charged", "props": {"amount": rng.randint(10, 200)}}))
    s = parse_instant(PROMO_AT)
    for user in rng.sample(ids, users // 3):  # a click names the send a user in the test group got at s
        at = s // US + rng.randint(1, 3 * 3600)  # some after s + 2h: too late to count
        props = {"send_id": send_id_for("promo", user, s), "campaign": "promo"}
        records.append((at, {"user": user, "name": "Push Clicked", "props": props}))
    records.sort(key=lambda r: r[0])
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for ts, record in records:
            f.write(json.dumps({**record, "ts": iso(ts * US)}) + "\n")
    return path


def diff_output(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["diff", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_jobs_2_is_byte_identical_to_jobs_1(seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl", seed)
    for form in ("text", "json"):
        argv = [str(old), str(new), "--events", str(records), "--format", form, "--all-days"]
        one = diff_output([*argv, "--jobs", "1"], capsys)
        two = diff_output([*argv, "--jobs", "2"], capsys)
        assert two == one
        assert diff_output(argv, capsys) == one  # the default, whatever it is on this machine
    report = json.loads(one)
    campaigns = {c["campaign"]: c for c in report["campaigns"]}
    assert {cid: c["status"] for cid, c in campaigns.items()} == {"cart": "changed", "promo": "changed",
                                                                    "viewed": "changed"}
    assert report["settings_changed"].keys() == {"global_per_user_per_day", "min_gap"}
    # what the two processes must each get right: the rules that couple users, and a user's campaigns
    assert campaigns["cart"]["outcomes"]["delay"]["old"] > 0 and campaigns["cart"]["outcomes"]["delay"]["new"] > 0
    reasons = {reason for c in campaigns.values() for reason in c["suppressed"]}
    assert {"global_limit", "min_gap", "campaign_limit"} <= reasons
    assert campaigns["promo"]["winners"] and all(w["old"] and w["new"] for w in campaigns["promo"]["winners"])


def test_throttle_delays_and_winner_rates_are_exercised(tmp_path: Path) -> None:
    """The generated log is not too tame: throttled delays, and a winner chosen on clicks (not a tie of
    zero rates), in one replay of the old version."""
    from pushlang.compiler import compile_paths
    from pushlang.runtime.outcomes import Output
    from pushlang.runtime.replay import replay
    from pushlang.runtime.store import MemoryStore

    old, _ = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl", 1)
    result = compile_paths([str(old)])
    assert result.plan is not None, result.diagnostics
    outputs: list[Output] = []
    with records.open("rb") as lines:
        replay(result.plan, lines, MemoryStore(), outputs.append)
    assert any(o.outcome == "delay" and o.reason == "throttle" and o.campaign == "cart" for o in outputs)
    assert any(o.outcome == "delay" and o.reason == "throttle" and o.campaign == "viewed" for o in outputs)
    (winner,) = [o for o in outputs if o.outcome == "winner"]
    assert winner.rates is not None and any(rate > 0 for rate in winner.rates.values())


def test_jobs_2_through_the_console(tmp_path: Path) -> None:
    """``python -m pushlang diff`` in a process of its own (one thread: the worker is forked on Linux),
    on a gzipped log, against ``--jobs 1``."""
    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl.gz", 4)
    outputs = []
    for jobs in ("1", "2"):
        proc = subprocess.run([sys.executable, "-m", "pushlang", "diff", str(old), str(new), "--events", str(records),
                               "--jobs", jobs], capture_output=True, cwd=tmp_path, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr == b""
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(b"pushlang diff ")


def test_spawned_worker_gives_the_same_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Where fork is not used (macOS, Windows, a process with threads) the worker is spawned: the plan
    and the record source are pickled on the way in."""
    import multiprocessing

    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl", 5, users=120)
    argv = [str(old), str(new), "--events", str(records)]
    one = diff_output([*argv, "--jobs", "1"], capsys)
    monkeypatch.setattr(diff, "_context", lambda: multiprocessing.get_context("spawn"))
    assert diff_output([*argv, "--jobs", "2"], capsys) == one


def test_stdin_with_jobs_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Records on stdin are kept for the worker in a temporary file, removed afterwards."""
    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl", 6, users=120)
    argv = [str(old), str(new), "--events", "-"]
    outputs = []
    spools: list[str] = []
    real_mkstemp = diff.tempfile.mkstemp

    def mkstemp(**kwargs: Any) -> tuple[int, str]:
        fd, path = real_mkstemp(**kwargs)
        spools.append(path)
        return fd, path

    monkeypatch.setattr(diff.tempfile, "mkstemp", mkstemp)
    for jobs in ("1", "2"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(records.read_bytes())))
        outputs.append(diff_output([*argv, "--jobs", jobs], capsys))
    assert outputs[0] == outputs[1]
    assert len(spools) == 1 and not os.path.exists(spools[0])


def test_more_jobs_than_two_run_as_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl", 7, users=60)
    argv = [str(old), str(new), "--events", str(records)]
    assert diff_output([*argv, "--jobs", "8"], capsys) == diff_output([*argv, "--jobs", "1"], capsys)


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_jobs_must_be_a_positive_number(jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_versions(tmp_path)
    assert main(["diff", str(old), str(new), "--events", str(tmp_path), "--jobs", jobs]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_help_explains_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--jobs N" in out and "byte for byte" in out and "default: 2 when" in out


# ---- a worker that fails ----------------------------------------------------------------------------


def _fail_in_worker(monkeypatch: pytest.MonkeyPatch, how: str) -> list[str]:
    """Make the replay of the old version fail in the worker process (forked: it inherits the patch);
    the list says how far the replay in this process got."""
    parent = os.getpid()
    real = diff._replay
    seen: list[str] = []

    def replay(compiled: Any, lines: Any, until: Any, track: Any, progress: Any = None) -> Any:
        if os.getpid() != parent:
            if how == "raise":
                raise ValueError("the old version could not be replayed")
            if how == "bug":
                raise KeyError("an internal mistake")
            os._exit(9)  # killed: no word back
        seen.append("started")
        run = real(compiled, lines, until, track, progress)
        seen.append("finished")
        return run

    monkeypatch.setattr(diff, "_replay", replay)
    monkeypatch.setattr(diff.threading, "active_count", lambda: 1)  # fork, so that the patch is inherited
    return seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the failing worker is made by a forked patch")
def test_an_error_in_the_worker_is_the_commands_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl", 8, users=100)
    _fail_in_worker(monkeypatch, "raise")
    assert main(["diff", str(old), str(new), "--events", str(records), "--jobs", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "pushlang: error: the old version could not be replayed\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the failing worker is made by a forked patch")
def test_a_bug_in_the_worker_shows_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl", 8, users=100)
    _fail_in_worker(monkeypatch, "bug")
    with pytest.raises(KeyError, match="an internal mistake") as caught:
        main(["diff", str(old), str(new), "--events", str(records), "--jobs", "2"])
    assert isinstance(caught.value.__cause__, diff._RemoteTraceback)
    assert "in replay" in str(caught.value.__cause__)  # the worker's own frames


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the failing worker is made by a forked patch")
def test_a_worker_that_dies_is_a_clear_error_not_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_versions(tmp_path)
    records = tmp_path / "many.jsonl"  # long enough that this process notices between its batches
    lines = generate(tmp_path / "records.jsonl", 9, users=100).read_text(encoding="utf-8").splitlines()
    tail = [json.dumps({"user": "u000", "ts": "2026-12-04T00:00:00Z", "name": "Idle"})] * 20_000
    records.write_text("\n".join(lines + tail) + "\n", encoding="utf-8")
    seen = _fail_in_worker(monkeypatch, "die")
    assert main(["diff", str(old), str(new), "--events", str(records), "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pushlang: error: the replay of the old version in a worker process ended without a "
                          "result (exit code 9)")
    assert "--jobs 1" in err
    assert seen == ["started"]  # this process stopped its own replay early


def test_a_corrupt_gzip_is_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = write_versions(tmp_path)
    records = generate(tmp_path / "records.jsonl.gz", 10, users=100)
    data = records.read_bytes()
    records.write_bytes(data[: len(data) // 2])
    assert main(["diff", str(old), str(new), "--events", str(records), "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pushlang: error: a compressed input is corrupt or truncated") and err.count("\n") == 1


def _state(pid: int) -> str | None:
    """The process's state letter (Z: a zombie, done), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


@pytest.mark.slow  # a crash test: a command killed while its worker replays
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker process through /proc")
def test_a_killed_command_leaves_no_worker_running(tmp_path: Path) -> None:
    import signal
    import time

    old, new = write_versions(tmp_path)
    records = tmp_path / "many.jsonl.gz"  # a replay of several seconds in a small file
    lines = generate(tmp_path / "records.jsonl", 11, users=100).read_bytes()
    idle = (json.dumps({"user": "u000", "ts": "2026-12-04T00:00:00Z", "name": "Idle"}) + "\n").encode()
    with gzip.open(records, "wb", compresslevel=1) as f:
        f.write(lines)
        for _ in range(30):
            f.write(idle * 100_000)
    proc = subprocess.Popen([sys.executable, "-m", "pushlang", "diff", str(old), str(new), "--events", str(records),
                             "--jobs", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while not workers and time.monotonic() < deadline:
        workers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        time.sleep(0.05)
    assert workers, "the worker process never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 2  # it notices between two batches of its replay, long before its end
    while _state(workers[0]) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(workers[0]) in (None, "Z"), "the worker went on without its command"
