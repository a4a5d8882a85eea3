"""bench/dispatch.py still runs end to end: a tiny run, every mode's line printed (no timing asserted)."""

from __future__ import annotations

import re

from bench_env import run_bench


def test_bench_dispatch_runs_every_mode() -> None:
    proc = run_bench("dispatch.py", "--subscriptions", "50", "--sync-sample", "10", "--verify-every", "7", timeout=300)
    lines = proc.stdout.splitlines()
    for prefix in ("(a) pywebpush.webpush() loop", "(b) pywebpush.webpush_async() loop", "(c) crypto floor",
                   "(d) pushlang WebPushChannel"):
        assert any(line.startswith(prefix) for line in lines), f"no line for {prefix!r}:\n{proc.stdout}"
    assert "(a) was measured on a sample of 10 of the 50 subscriptions" in proc.stdout
    assert "5 interleaved round(s), each row the median round" in proc.stdout
    assert "1 push in 7 checked" in proc.stdout
    for prefix in ("(d) / (c) crypto floor:", "(d) / (b) webpush_async loop:"):
        ratio = [line for line in lines if line.startswith(prefix)]
        assert ratio and ("target ≥" in ratio[0] and (": met)" in ratio[0] or ": not met)" in ratio[0])), proc.stdout
    assert "the sender's CPU per push" in proc.stdout
    # the service accepted every push of (d), in every round, and every one it checked decrypted
    check = [line for line in lines if line.startswith("service check (d):")]
    assert check and check[0].endswith("-> OK"), proc.stdout
    found = re.search(r"250 answered 201, (\d+) checked of which (\d+) decrypted", check[0])
    assert found and int(found[1]) == int(found[2]) > 0, proc.stdout
