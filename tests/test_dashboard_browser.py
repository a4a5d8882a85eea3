"""The dashboard in headless Chromium: `pushlang serve` fills it, and its charts draw the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from browser_env import BROWSER, CHROMIUM, free_port, needs_browser

pytestmark = needs_browser

TOKEN = "dashboard-token"
CAMPAIGN = '''campaign welcome {
  labels "onboarding"
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome"
    body "Thanks for joining"
  }
  conversion "Charged" within 1d revenue event.amount
}
'''



def test_dashboard_charts_draw_the_data(tmp_path: Path) -> None:
    (tmp_path / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "PUSHLANG_API_TOKEN": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "pushlang", "serve", "welcome.push", "--port", str(port),
                               "--store", "state.db"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        records = []
        for n in range(12):  # a day of sign-ups and a few purchases, hour by hour
            ts = f"2026-12-01T{8 + n:02d}:00:00Z"
            records.append({"type": "subscribe", "user": f"u{n}", "ts": ts, "platform": "chrome",
                            "endpoint": f"https://push.example.test/push/{n}", "keys": {"p256dh": "BPk", "auth": "a1"}})
            records.append({"user": f"u{n}", "ts": ts, "name": "Signed Up"})
            if n % 3 == 0:
                records.append({"user": f"u{n}", "ts": f"2026-12-01T{8 + n:02d}:30:00Z", "name": "Charged",
                                "props": {"amount": 10 + n}})
        request = urllib.request.Request(base + "/v1/records", method="POST",
                                         data="\n".join(json.dumps(r) for r in records).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=20) as answer:
            assert json.loads(answer.read())["accepted"] == len(records)
        for _ in range(100):  # the deliveries (to a closed port) are recorded in the background
            asking = urllib.request.Request(base + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"})
            stats = json.loads(urllib.request.urlopen(asking, timeout=5).read())
            (welcome,) = stats["campaigns"]
            if welcome["failed"] == 12:
                break
            time.sleep(0.1)
        assert (welcome["sends"], welcome["conversions"]) == (12, 4)
        shot = tmp_path / "dashboard.png"
        run = subprocess.run(["node", str(BROWSER / "screenshot.mjs"), "--url", base + f"/dashboard#token={TOKEN}",
                              "--out", str(shot)], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "CHROMIUM": CHROMIUM})
        assert run.returncode == 0, run.stdout + run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["ok"] and int(result["chartsReady"]) >= 12  # points drawn: the hours of activity
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # opened without the token, the page says what to do instead of drawing
        bare = subprocess.run(["node", str(BROWSER / "screenshot.mjs"), "--url", base + "/dashboard",
                               "--out", str(tmp_path / "no-token.png"), "--timeout-ms", "20000"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
        refused = json.loads(bare.stdout.strip().splitlines()[-1])
        assert bare.returncode == 1 and not refused["ok"] and refused["chartsReady"] is None
        assert "/dashboard#token=<PUSHLANG_API_TOKEN>" in refused["pageError"]
    finally:
        server.terminate()
        server.wait(timeout=10)
