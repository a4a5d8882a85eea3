"""The browser side against the real `pushlang serve`: a page from serve registers /sdk/sw.js, a push
delivered through the DevTools protocol shows the notification, and `Push Viewed` reaches the API."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from browser_env import BROWSER, CHROMIUM, free_port, needs_browser

from pushlang.dispatch.keys import generate
from pushlang.service.identity import sign

pytestmark = needs_browser
TOKEN = "browser-token"
SECRET = "the-user-token-secret-of-this-test-0123"
CAMPAIGN = '''campaign cart {
  platforms chrome
  on "Added To Cart"
  message {
    title "Still thinking, @{user.first_name | default: 'friend'}?"
    body "Your @event.product is waiting"
    url "https://shop.example.com/cart"
  }
}
'''



def _get(url: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        result: dict[str, object] = json.loads(answer.read())
        return result


def test_a_page_from_serve_shows_the_push_and_reports_it_viewed(tmp_path: Path) -> None:
    generate(tmp_path / "vapid.pem")
    (tmp_path / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n'
        f'user_token_secret = "{SECRET}"\n', encoding="utf-8")
    (tmp_path / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "pushlang", "serve", "cart.push", "--port", str(port),
                               "--store", "state.db"], cwd=tmp_path, env={**os.environ, "PUSHLANG_API_TOKEN": TOKEN},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                _get(base + "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        # A real send for u-asha (its push service is unreachable here: the browser gets the payload
        # through the DevTools protocol instead, exactly as the service worker would from a push).
        records = [{"type": "profile", "user": "u-asha", "ts": "2026-12-01T08:00:00Z", "props": {"first_name": "Asha"}},
                   {"type": "subscribe", "user": "u-asha", "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
                    "endpoint": "http://127.0.0.1:9/push/asha", "keys": {"p256dh": "BPk", "auth": "a1"}},
                   {"user": "u-asha", "ts": "2026-12-01T08:05:00Z", "name": "Added To Cart",
                    "props": {"product": "Lamp"}}]
        request = urllib.request.Request(base + "/v1/records", method="POST",
                                         data="\n".join(json.dumps(r) for r in records).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        urllib.request.urlopen(request, timeout=10).close()
        send_id = None
        for _ in range(100):
            row = sqlite3.connect(tmp_path / "state.db").execute(
                "SELECT send_id FROM activity WHERE outcome = 'send'").fetchone()
            if row:
                send_id = row[0]
                break
            time.sleep(0.1)
        assert send_id is not None
        payload = {"title": "Still thinking, Asha?", "body": "Your Lamp is waiting",
                   "url": "https://shop.example.com/cart", "send_id": send_id, "campaign": "cart"}
        user_token = sign(SECRET, "u-asha", int(time.time()) + 3600)
        run = subprocess.run(["node", str(BROWSER / "sw_push.mjs"), "--url",
                              f"{base}/sdk/demo?user=u-asha&token={user_token}",
                              "--payload", json.dumps(payload), "--wait-for", "document.body.dataset.registered"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
        assert run.returncode == 0, run.stdout + run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["waited"] == "yes"
        assert result["notification"]["title"] == "Still thinking, Asha?"
        assert result["notification"]["body"] == "Your Lamp is waiting"
        assert result["viewed"] is not None and result["viewed"]["status"] == 200, run.stderr
        stats = _get(base + "/v1/stats")
        (cart,) = stats["campaigns"]  # type: ignore[misc]
        assert cart["sends"] == 1 and cart["viewed"] == 1
    finally:
        server.terminate()
        server.wait(timeout=10)
