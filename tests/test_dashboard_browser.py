"""The dashboard in headless Chromium: `pushlang serve` fills it, its charts draw the data, and its
table shows the throttled delays and the suppressions by reason."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from browser_env import BROWSER, CHROMIUM, needs_browser, serving

from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.outcomes import Output

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
# A purchase within the hour after the welcome push meets min_gap; u0's second purchase, two hours
# later, gets the upsell, and the third meets the global limit of two pushes a day.
UPSELL = '''campaign upsell "Thank-you offer" {
  labels "sales"
  platforms chrome
  on "Charged"
  message {
    title "Thank you!"
    body "Here is 10% off your next order"
  }
}
'''
LIMITS = '[limits]\nglobal_per_user_per_day = 2\nmin_gap = "1h"\n'
# welcome's throttle (SPEC §12.1) delays five sign-ups, written into the service's activity log as the
# engine writes them; one more delay is DND's.
DELAYS = [Output(f"2026-12-01T09:00:{n:02d}Z", "welcome", f"t{n}", "delay", "throttle", f"{n:024x}",
                 until="2026-12-01T09:01:00Z") for n in range(5)] + [
    Output("2026-12-01T09:00:30Z", "welcome", "t9", "delay", "dnd", "9" * 24, until="2026-12-01T10:00:00Z")]
ROW = '#stats tbody tr[data-campaign="{}"] td[data-key="{}"]'


def test_dashboard_charts_draw_the_data(tmp_path: Path) -> None:
    (tmp_path / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    (tmp_path / "upsell.push").write_text(UPSELL, encoding="utf-8")
    (tmp_path / "pushlang.toml").write_text(LIMITS, encoding="utf-8")
    with serving(tmp_path, ["welcome.push", "upsell.push"], TOKEN) as base:
        records = []
        for n in range(12):  # a day of sign-ups and a few purchases, hour by hour
            ts = f"2026-12-01T{8 + n:02d}:00:00Z"
            records.append({"type": "subscribe", "user": f"u{n}", "ts": ts, "platform": "chrome",
                            "endpoint": f"https://push.example.test/push/{n}", "keys": {"p256dh": "BPk", "auth": "a1"}})
            records.append({"user": f"u{n}", "ts": ts, "name": "Signed Up"})
            if n % 3 == 0:
                records.append({"user": f"u{n}", "ts": f"2026-12-01T{8 + n:02d}:30:00Z", "name": "Charged",
                                "props": {"amount": 10 + n}})
        for hh in ("10:00", "11:30"):
            records.append({"user": "u0", "ts": f"2026-12-01T{hh}:00Z", "name": "Charged", "props": {"amount": 5}})
        records.sort(key=lambda r: str(r["ts"]))
        request = urllib.request.Request(base + "/v1/records", method="POST",
                                         data="\n".join(json.dumps(r) for r in records).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=20) as answer:
            assert json.loads(answer.read())["accepted"] == len(records)
        log = ActivityLog(str(tmp_path / "state.db"))  # the service's file, on a connection of its own
        for out in DELAYS:
            log.record(out)
        log.close()
        for _ in range(100):  # the deliveries (to a closed port) are recorded in the background
            asking = urllib.request.Request(base + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"})
            stats = json.loads(urllib.request.urlopen(asking, timeout=5).read())
            if stats["totals"]["failed"] == stats["totals"]["sends"] == 13:
                break
            time.sleep(0.1)
        upsell, welcome = stats["campaigns"]
        assert (welcome["sends"], welcome["failed"], welcome["conversions"]) == (12, 12, 4)
        assert (welcome["throttled"], welcome["delayed_by"]) == (5, {"throttle": 5, "dnd": 1})
        assert (upsell["sends"], upsell["suppressed_by"]) == (1, {"min_gap": 4, "global_limit": 1})
        shot = tmp_path / "dashboard.png"
        why = '#stats tbody tr.why[data-campaign="{}"] [data-outcome="{}"] .reason'
        selectors = ["#stats thead th", ROW.format("welcome", "throttled"), ROW.format("upsell", "throttled"),
                     ROW.format("upsell", "suppressed"), why.format("upsell", "suppress"), why.format("welcome", "delay"),
                     why.format("welcome", "suppress"), '#stats tfoot td[data-key="throttled"]',
                     '#stats tfoot [data-outcome="suppress"] .reason', '#stats tbody td[data-key="reasons"]']
        run = subprocess.run(["node", str(BROWSER / "screenshot.mjs"), "--url", base + f"/dashboard#token={TOKEN}",
                              "--out", str(shot), *(arg for s in selectors for arg in ("--text", s))],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
        assert run.returncode == 0, run.stdout + run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["ok"] and int(result["chartsReady"]) >= 12  # points drawn: the hours of activity
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("PUSHLANG_KEEP_SCREENSHOT"):  # a copy to look at
            Path(os.environ["PUSHLANG_KEEP_SCREENSHOT"]).write_bytes(shot.read_bytes())

        # the table shows the throttle's delays (every delay reason in the tooltip) and the suppress
        # reasons, largest first, as /v1/stats gives them
        texts = {s: [(t["text"].strip(), t["title"]) for t in found] for s, found in result["texts"].items()}
        headers = [text for text, _ in texts["#stats thead th"]]
        assert headers[:4] == ["Campaign", "Sends", "Throttled", "Suppressed"]
        assert texts[ROW.format("welcome", "throttled")] == [("5", "delayed 6: throttle 5, dnd 1")]
        assert texts[ROW.format("upsell", "throttled")] == [("0", None)]
        assert texts[ROW.format("upsell", "suppressed")] == [("5", "suppressed 5: min_gap 4, global_limit 1")]
        assert [t for t, _ in texts[why.format("upsell", "suppress")]] == ["min_gap 4", "global_limit 1"]
        assert [t for t, _ in texts[why.format("welcome", "delay")]] == ["throttle 5", "dnd 1"]
        assert texts[why.format("welcome", "suppress")] == []
        assert [t for t, _ in texts['#stats tbody td[data-key="reasons"]']] == [  # one line a campaign, in order
            "Suppressed min_gap 4 global_limit 1", "Delayed throttle 5 dnd 1"]
        assert texts['#stats tfoot td[data-key="throttled"]'] == [("5", "delayed 6: throttle 5, dnd 1")]
        assert [t for t, _ in texts['#stats tfoot [data-outcome="suppress"] .reason']] == ["min_gap 4",
                                                                                           "global_limit 1"]

        # opened without the token, the page says what to do instead of drawing
        bare = subprocess.run(["node", str(BROWSER / "screenshot.mjs"), "--url", base + "/dashboard",
                               "--out", str(tmp_path / "no-token.png"), "--timeout-ms", "20000"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
        refused = json.loads(bare.stdout.strip().splitlines()[-1])
        assert bare.returncode == 1 and not refused["ok"] and refused["chartsReady"] is None
        assert "/dashboard#token=<PUSHLANG_API_TOKEN>" in refused["pageError"]
