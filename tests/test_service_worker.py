"""The browser SDK in a real browser: headless Chromium runs /sdk/sw.js and /sdk/subscribe.js.

A small aiohttp server, written here, stands in for `pushlang serve`: it serves a test page, the SDK
files from the package folder and records what reaches POST /v1/browser/records. The Node harness
tests/browser/sw_push.mjs (playwright-core driving Debian's /usr/bin/chromium) opens the page, delivers
a push payload to the service worker through the DevTools protocol and reads back the notification.
Needs `apt-get install -y chromium` and `npm ci` (or `npm install`) in tests/browser; skipped without.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushlang.builtins import LANG_TAG
from pushlang.config import is_timezone
from pushlang.service.identity import TOKEN_HEADER, browser_profile_problem, sign

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "pushlang" / "service" / "static" / "sdk"
HARNESS = ROOT / "tests" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if NODE is None:
        return "node is missing"
    if not (HARNESS / "node_modules" / "playwright-core").is_dir():
        return "tests/browser/node_modules/playwright-core is missing (cd tests/browser && npm ci)"
    return None


needs_chromium = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

USER = "u-asha"
USER_TOKEN = sign("a-secret-of-the-test-page-0123456789", USER, int(time.time()) + 3600)

# The page registers the worker for USER, then subscribes through subscribe.js. Headless Chromium
# has no reachable push service (FCM), so PushManager.subscribe is replaced by a stand-in that
# hands back a fake subscription whose endpoint carries the application server key it was given.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pushlang SDK test</title></head>
<body>
<script src="/sdk/subscribe.js"></script>
<script>
const b64url = (bytes) => btoa(String.fromCharCode(...bytes))
  .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
PushManager.prototype.subscribe = async function (options) {
  const key = b64url(new Uint8Array(options.applicationServerKey));
  const endpoint = 'https://push.invalid/' + key + '?userVisibleOnly=' + options.userVisibleOnly;
  return {endpoint, toJSON: () => ({endpoint, keys: {p256dh: 'p256dh-test', auth: 'auth-test'}})};
};
pushlang.register({user: %(user)s, token: %(token)s, vapidPublicKey: %(key)s})
  .then(() => pushlang.subscribe({user: %(user)s, token: %(token)s, vapidPublicKey: %(key)s}))
  .then(() => { document.body.dataset.subscribed = 'yes'; })
  .catch((err) => { console.error('subscribe failed: ' + err); document.body.dataset.subscribed = 'no'; });
</script>
</body></html>
"""


def _vapid_public_key() -> str:
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


# A 1×1 PNG for the notification's icon and image.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4n8bwHwAGMgJlMwnCZQAAAABJRU5ErkJggg==")

# A page that draws a chart on a canvas, then says so the way /dashboard will.
CHART_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>charts</title></head>
<body style="margin:0"><canvas id="c" width="600" height="300"></canvas>
<script>
setTimeout(() => {
  const g = document.getElementById('c').getContext('2d');
  g.fillStyle = '#fff'; g.fillRect(0, 0, 600, 300);
  g.fillStyle = '#36c';
  [40, 120, 80, 200, 160].forEach((v, i) => g.fillRect(40 + i * 100, 280 - v, 60, v));
  document.body.dataset.chartsReady = '1';
}, 300);
</script></body></html>
"""


def _app(records: list[dict[str, Any]], vapid_key: str, throttled: list[str] | None = None) -> web.Application:
    """The stand-in; with ``throttled``, the first report of a push is answered 429 (Retry-After: 1)
    and its text kept there, as `pushlang serve` answers a client over its rate limit."""
    page = PAGE % {"user": json.dumps(USER), "token": json.dumps(USER_TOKEN), "key": json.dumps(vapid_key)}

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def cart(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>cart</title>", content_type="text/html")

    async def sdk(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in {"sw.js", "subscribe.js"}:
            raise web.HTTPNotFound()
        return web.Response(body=(SDK / name).read_bytes(), content_type="application/javascript",
                            headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"})

    async def browser_records(request: web.Request) -> web.Response:
        """Keeps each record with the user token it came with (as `_token`)."""
        text = await request.text()
        body = text.strip()
        got = json.loads(body) if body.startswith("[") else [json.loads(x) for x in body.splitlines() if x]
        if throttled is not None and not throttled and any(r.get("name") == "Push Viewed" for r in got):
            throttled.append(text)
            return web.json_response({"error": "too many requests"}, status=429, headers={"Retry-After": "1"})
        records.extend({**r, "_token": request.headers.get(TOKEN_HEADER)} for r in got)
        return web.json_response({"accepted": len(got)}, status=202)

    async def pixel(_: web.Request) -> web.Response:
        return web.Response(body=PIXEL, content_type="image/png")

    async def charts(_: web.Request) -> web.Response:
        return web.Response(text=CHART_PAGE, content_type="text/html")

    app = web.Application()
    async def favicon(_: web.Request) -> web.Response:
        return web.Response(status=204)

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/cart", cart)
    app.router.add_get("/pixel.png", pixel)
    app.router.add_get("/charts", charts)
    app.router.add_get("/sdk/{name}", sdk)
    app.router.add_post("/v1/browser/records", browser_records)
    return app


@asynccontextmanager
async def _server(records: list[dict[str, Any]], vapid_key: str,
                  throttled: list[str] | None = None) -> AsyncIterator[str]:
    """Serve the test app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(_app(records, vapid_key, throttled))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _run_harness(script: str, *args: str, timeout: float = 90.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(NODE), str(HARNESS / script), *args, cwd=HARNESS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return -1, out.decode(), err.decode() + f"\n(harness killed after {timeout}s)"
    return proc.returncode or 0, out.decode(), err.decode()


async def _push(base: str, payload: dict[str, Any], *extra: str) -> tuple[dict[str, Any], str]:
    """Run sw_push.mjs against the test page (once the page has subscribed); its result and stderr."""
    code, out, err = await _run_harness("sw_push.mjs", "--url", f"{base}/", "--payload", json.dumps(payload),
                                        "--wait-for", "document.body.dataset.subscribed", *extra)
    assert code == 0, f"harness failed ({code}):\nstdout: {out}\nstderr: {err}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert result["ok"] is True
    assert result["scope"] == f"{base}/"
    return result, err


def _viewed(records: list[dict[str, Any]], send_id: str) -> dict[str, Any] | None:
    return next((r for r in records if r.get("name") == "Push Viewed"
                 and r.get("props", {}).get("send_id") == send_id), None)


@needs_chromium
def test_service_worker_shows_push_and_reports_viewed() -> None:
    asyncio.run(_service_worker_shows_push_and_reports_viewed())


async def _service_worker_shows_push_and_reports_viewed() -> None:
    records: list[dict[str, Any]] = []
    vapid_key = _vapid_public_key()
    async with _server(records, vapid_key) as base:
        payload = {"title": "Still thinking, Asha?", "body": "Your Lamp is waiting", "url": f"{base}/cart",
                   "send_id": "s-1", "campaign": "cart"}
        result, err = await _push(base, payload)
        shown = result["notification"]
        assert shown["title"] == "Still thinking, Asha?"
        assert shown["body"] == "Your Lamp is waiting"
        assert shown["data"] == {"url": f"{base}/cart", "send_id": "s-1", "campaign": "cart", "actions": []}
        assert shown["requireInteraction"] is False
        assert shown["actions"] == []

        # The worker's report: the harness saw the request finish, and the server has the record.
        assert result["viewed"] is not None and result["viewed"]["status"] == 202, err
        viewed = _viewed(records, "s-1")
        assert viewed is not None, f"no Push Viewed reached the server; got {records}\nstderr: {err}"
        assert viewed["type"] == "event"
        assert viewed["user"] == USER
        assert viewed["props"] == {"send_id": "s-1", "campaign": "cart"}
        assert viewed["ts"].endswith("Z")
        assert viewed["_token"] == USER_TOKEN  # the page handed the worker its user token

        # subscribe.js, with the push service stood in for: the subscription record it posted.
        assert result["waited"] == "yes", err
        sub = next((r for r in records if r.get("type") == "subscribe"), None)
        assert sub is not None, f"no subscribe record reached the server; got {records}\nstderr: {err}"
        assert sub["user"] == USER
        assert sub["platform"] == "chrome"
        assert sub["endpoint"] == f"https://push.invalid/{vapid_key}?userVisibleOnly=true"
        assert sub["keys"] == {"p256dh": "p256dh-test", "auth": "auth-test"}
        assert sub["_token"] == USER_TOKEN
        # ... and, in the same request, the browser's language and time zone as the user's profile
        profile = next((r for r in records if r.get("type") == "profile"), None)
        assert profile is not None, f"no profile record reached the server; got {records}"
        assert profile["user"] == USER and set(profile["props"]) == {"language", "timezone"}, profile
        assert LANG_TAG.fullmatch(profile["props"]["language"]), profile
        assert is_timezone(profile["props"]["timezone"]), profile
        assert browser_profile_problem(profile["props"]) is None  # what the browser endpoint takes


@needs_chromium
def test_a_rate_limited_report_is_sent_again_after_retry_after() -> None:
    asyncio.run(_a_rate_limited_report_is_sent_again())


async def _a_rate_limited_report_is_sent_again() -> None:
    records: list[dict[str, Any]] = []
    throttled: list[str] = []
    async with _server(records, _vapid_public_key(), throttled) as base:
        payload = {"title": "Back in stock", "body": "The Lamp", "send_id": "s-9", "campaign": "restock"}
        result, err = await _push(base, payload)
        assert len(throttled) == 1 and "s-9" in throttled[0], err
        assert result["viewed"] is not None and result["viewed"]["status"] == 202, err
        viewed = _viewed(records, "s-9")
        assert viewed is not None and viewed["_token"] == USER_TOKEN, f"{records}\nstderr: {err}"


@needs_chromium
def test_service_worker_shows_every_payload_field() -> None:
    asyncio.run(_service_worker_shows_every_payload_field())


async def _service_worker_shows_every_payload_field() -> None:
    records: list[dict[str, Any]] = []
    async with _server(records, _vapid_public_key()) as base:
        actions = [{"title": "Check out", "url": f"{base}/checkout"}, {"title": "Later", "url": f"{base}/later"}]
        payload = {"title": "Back in stock", "body": "The Lamp", "url": f"{base}/p/lamp", "send_id": "s-2",
                   "campaign": "restock", "icon": f"{base}/pixel.png", "image": f"{base}/pixel.png",
                   "actions": actions, "requireInteraction": True, "tag": "restock-lamp"}
        result, err = await _push(base, payload)
        shown = result["notification"]
        assert shown["title"] == "Back in stock"
        assert shown["body"] == "The Lamp"
        assert shown["icon"] == f"{base}/pixel.png"
        assert shown["image"] == f"{base}/pixel.png"
        assert shown["tag"] == "restock-lamp"
        assert shown["requireInteraction"] is True
        assert shown["actions"] == [{"action": "a0", "title": "Check out"}, {"action": "a1", "title": "Later"}]
        assert shown["data"] == {"url": f"{base}/p/lamp", "send_id": "s-2", "campaign": "restock",
                                 "actions": actions}
        viewed = _viewed(records, "s-2")
        assert viewed is not None, f"no Push Viewed reached the server; got {records}\nstderr: {err}"
        assert viewed["props"] == {"send_id": "s-2", "campaign": "restock"}


@needs_chromium
@pytest.mark.parametrize(("action", "opens"), [("a1", "/later"), ("", "/p/lamp")])
def test_a_click_on_the_notification_or_a_button_is_reported(action: str, opens: str) -> None:
    asyncio.run(_a_click_is_reported(action, opens))


async def _a_click_is_reported(action: str, opens: str) -> None:
    records: list[dict[str, Any]] = []
    async with _server(records, _vapid_public_key()) as base:
        actions = [{"title": "Check out", "url": f"{base}/checkout"}, {"title": "Later", "url": f"{base}/later"}]
        payload = {"title": "Back in stock", "body": "The Lamp", "url": f"{base}/p/lamp", "send_id": "s-3",
                   "campaign": "restock", "actions": actions}
        result, err = await _push(base, payload, "--click", action)
        assert result["clicked"] is not None and result["clicked"]["status"] == 202, err
        clicks = [r for r in records if r.get("name") == "Push Clicked"]
        assert [c["props"] for c in clicks] == [{"send_id": "s-3", "campaign": "restock",
                                                 "action": action or "default", "url": f"{base}{opens}"}]
        assert clicks[0]["user"] == USER and clicks[0]["ts"].endswith("Z") and clicks[0]["_token"] == USER_TOKEN
        assert result["left"] == 0  # the handler closed the notification


@needs_chromium
def test_screenshot_harness_waits_for_charts(tmp_path: Path) -> None:
    asyncio.run(_screenshot_harness_waits_for_charts(tmp_path))


async def _screenshot_harness_waits_for_charts(tmp_path: Path) -> None:
    async with _server([], _vapid_public_key()) as base:
        out_png = tmp_path / "charts.png"
        code, out, err = await _run_harness("screenshot.mjs", "--url", f"{base}/charts", "--out", str(out_png),
                                            "--width", "800", "--height", "400", "--viewport-only")
        assert code == 0, f"screenshot.mjs failed ({code}):\nstdout: {out}\nstderr: {err}"
        result = json.loads(out.strip().splitlines()[-1])
        assert result["chartsReady"] == "1"
        assert (result["width"], result["height"]) == (800, 400)
        assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


PLATFORMS = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36": "chrome",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36":
        "chrome",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "
    "Edg/131.0.2903.86": "edge",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0": "firefox",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Safari/605.1.15": "safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0 "
    "Mobile/15E148 Safari/604.1": "safari",
}


@pytest.mark.skipif(NODE is None, reason="node is missing")
def test_platform_detection_in_both_sdk_files() -> None:
    """subscribe.js and sw.js carry the same user-agent → platform rule; run both under node."""
    script = """
const vm = require('node:vm'), fs = require('node:fs');
const [sdk, uas] = [process.argv[1], JSON.parse(process.argv[2])];
const page = {navigator: {userAgent: ''}, location: {origin: 'http://x'}, atob, URLSearchParams};
vm.runInNewContext(fs.readFileSync(sdk + '/subscribe.js', 'utf8'), {window: page});
const worker = {location: {href: 'http://x/sdk/sw.js?user=u', origin: 'http://x'},
                addEventListener() {}, URL, atob, console};
worker.self = worker;
vm.createContext(worker);
vm.runInContext(fs.readFileSync(sdk + '/sw.js', 'utf8'), worker);
const out = {};
for (const ua of uas) out[ua] = [page.pushlang.platform(ua), vm.runInContext('pushlangPlatform', worker)(ua)];
console.log(JSON.stringify(out));
"""
    done = subprocess.run([str(NODE), "-e", script, str(SDK), json.dumps(list(PLATFORMS))],
                          capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(done.stdout)
    assert got == {ua: [want, want] for ua, want in PLATFORMS.items()}


@pytest.mark.skipif(NODE is None, reason="node is missing")
def test_subscribe_js_asks_for_the_user_token_before_anything_else() -> None:
    script = """
const vm = require('node:vm'), fs = require('node:fs');
const page = {navigator: {userAgent: '', serviceWorker: {}}, location: {origin: 'http://x'}, atob};
vm.runInNewContext(fs.readFileSync(process.argv[1] + '/subscribe.js', 'utf8'), {window: page, URLSearchParams});
const calls = [];
page.navigator.serviceWorker.register = (url, options) => { calls.push(url); return Promise.resolve('ok'); };
(async () => {
  const out = {};
  for (const [name, options] of [['none', {user: 'u1'}], ['token', {user: 'u1', token: 'v1.1.sig'}]]) {
    out[name] = await page.pushlang.register(options).then(() => 'registered', (err) => String(err));
  }
  out.calls = calls;
  console.log(JSON.stringify(out));
})();
"""
    done = subprocess.run([str(NODE), "-e", script, str(SDK)], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(done.stdout)
    assert got["none"].startswith("Error: pushlang: `token` is required: the user id signed by your site")
    assert got["token"] == "registered"
    assert got["calls"] == ["/sdk/sw.js?user=u1&token=v1.1.sig&api=http%3A%2F%2Fx"]  # the worker gets the token
