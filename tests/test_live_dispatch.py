"""`replay --dispatch live` end to end: decisions become real pushes on the loopback push service."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from peers.webpush_service import Subscription, WebPushService

from pushlang.cli import main
from pushlang.dispatch.keys import generate

CAMPAIGN = '''campaign cart {
  platforms chrome, firefox
  on "Added To Cart"
  message {
    title "Still thinking, @{user.first_name | default: 'friend'}?"
    body "Your @event.product_name is waiting"
    url "https://shop.example.com/cart"
    icon "https://cdn.example.com/icon.png"
    ttl 2d
    urgency high
    tag "cart"
    button "Buy now" -> "https://shop.example.com/checkout"
  }
}
'''


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[WebPushService, Path]]:
    key = tmp_path / "vapid_private.pem"
    public = generate(key)
    (tmp_path / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid_private.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n'
        "[dispatch]\nmax_attempts = 2\n", encoding="utf-8")
    (tmp_path / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
    with WebPushService(application_server_key=public) as svc:
        yield svc, tmp_path


def _subscribe(user: str, sub: Subscription, ts: str) -> dict[str, object]:
    return {"type": "subscribe", "user": user, "ts": ts, "platform": sub.platform, "endpoint": sub.endpoint,
            "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}


def _write(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _secrets(pem: bytes) -> list[str]:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    body = "".join(pem.decode().splitlines()[1:-1])
    return [body[:32], raw.hex(), base64.urlsafe_b64encode(raw).rstrip(b"=").decode()]


def test_live_replay_delivers_the_rendered_push_and_drops_gone_subscriptions(
        service: tuple[WebPushService, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    svc, folder = service
    monkeypatch.chdir(folder)
    caplog.set_level(logging.DEBUG)
    chrome, firefox = svc.new_subscription("chrome"), svc.new_subscription("firefox")
    svc.script(firefox.id, [410])
    _write(folder / "records.jsonl", [
        {"type": "profile", "user": "u1", "ts": "2026-12-01T08:00:00Z", "props": {"first_name": "Asha"}},
        _subscribe("u1", chrome, "2026-12-01T08:00:00Z"),
        _subscribe("u1", firefox, "2026-12-01T08:00:00Z"),
        {"user": "u1", "ts": "2026-12-01T08:05:00Z", "name": "Added To Cart", "props": {"product_name": "Lamp"}},
        {"user": "u1", "ts": "2026-12-01T09:05:00Z", "name": "Added To Cart", "props": {"product_name": "Desk"}},
    ])
    code = main(["replay", "cart.push", "--events", "records.jsonl", "--out", "decisions.jsonl",
                 "--dispatch", "live", "--store", "sqlite:///state.db"])
    assert code == 0
    out = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    sends = [o for o in out if o["outcome"] == "send"]
    deliveries = [(o["outcome"], o["platforms"], o["status"], o["attempts"], o["reason"]) for o in out
                  if o["outcome"] in ("delivered", "failed")]
    assert len(sends) == 2
    assert deliveries == [
        ("delivered", ["chrome"], 201, 1, None),
        ("failed", ["firefox"], 410, 1, "subscription_gone"),
        ("delivered", ["chrome"], 201, 1, None),  # the gone Firefox subscription is never used again
    ]
    assert sorted(r.subscription_id for r in svc.requests) == sorted([chrome.id, chrome.id, firefox.id])
    first = json.loads(svc.payloads(chrome.id)[0] or b"{}")
    assert first == {"title": "Still thinking, Asha?", "body": "Your Lamp is waiting",
                     "url": "https://shop.example.com/cart", "send_id": sends[0]["send_id"], "campaign": "cart",
                     "icon": "https://cdn.example.com/icon.png",
                     "actions": [{"title": "Buy now", "url": "https://shop.example.com/checkout"}], "tag": "cart"}
    request = svc.requests[0]
    assert (request.ttl, request.urgency, request.topic) == (172800, "high", "cart")
    # The private key is nowhere: not in the records, not on the terminal, not in the logs.
    captured = capsys.readouterr()
    seen = (folder / "decisions.jsonl").read_text(encoding="utf-8") + captured.out + captured.err + caplog.text
    for secret in _secrets((folder / "vapid_private.pem").read_bytes()):
        assert secret not in seen
    assert "delivered" in captured.err  # the summary counts deliveries


def test_live_replay_without_credentials_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
    _write(tmp_path / "records.jsonl", [])
    assert main(["replay", "cart.push", "--events", "records.jsonl", "--dispatch", "live"]) == 2
    err = capsys.readouterr().err
    assert "[vapid] private_key_file" in err and "pushlang keys generate" in err


def test_a_rejected_vapid_key_halts_delivery_with_one_error(
        service: tuple[WebPushService, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    svc, folder = service
    monkeypatch.chdir(folder)
    generate(folder / "vapid_private.pem", force=True)  # not the key the subscriptions were made for
    records: list[dict[str, object]] = []
    for n in range(10):
        records.append(_subscribe(f"u{n}", svc.new_subscription(), "2026-12-01T08:00:00Z"))
    records += [{"user": f"u{n}", "ts": "2026-12-01T08:05:00Z", "name": "Added To Cart",
                 "props": {"product_name": "Lamp"}} for n in range(10)]
    _write(folder / "records.jsonl", records)
    assert main(["replay", "cart.push", "--events", "records.jsonl", "--out", "d.jsonl", "--dispatch", "live"]) == 1
    assert len(svc.requests) == 1 and svc.requests[0].status == 403
    out = [json.loads(line) for line in (folder / "d.jsonl").read_text(encoding="utf-8").splitlines()]
    failed = [o["reason"] for o in out if o["outcome"] == "failed"]
    assert sorted(failed) == ["channel_halted"] * 9 + ["vapid_rejected"]
    err = capsys.readouterr().err
    assert err.count("delivery halted") == 1 and "403" in err
