"""`pushlang send-test`: the campaign's message, rendered for test users, on real push services."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers.apns_service import ApnsService, make_device_token, make_provider_key
from peers.webpush_service import WebPushService

from pushlang.cli import main
from pushlang.dispatch.keys import generate

CAMPAIGN = '''campaign welcome {
  on "Signed Up"
  who {
    user.country == "DE"
  }
  message {
    title "Welcome, @{user.first_name | default: 'friend'}"
    body "Thanks for signing up via @event.method"
    url "https://shop.example.com/welcome?src=push"
    ttl 1d
  }
}
'''


@pytest.fixture
def peers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebPushService, ApnsService]]:
    provider = make_provider_key()
    public = generate(tmp_path / "vapid.pem")
    p8 = provider.write_p8(tmp_path)
    (tmp_path / "pushlang.toml").write_text(
        f'[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n'
        f'[apns]\nkey_file = "{p8.name}"\nkey_id = "{provider.key_id}"\nteam_id = "{provider.team_id}"\n'
        'website_push_id = "web.com.example.shop"\n', encoding="utf-8")
    (tmp_path / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with WebPushService(application_server_key=public) as webpush, ApnsService(provider) as apns:
        apns.redirect_aioapns(monkeypatch)
        yield webpush, apns


def test_send_test_reaches_test_profiles_on_web_push_and_apns(
        peers: tuple[WebPushService, ApnsService], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    webpush, apns = peers
    chrome = webpush.new_subscription("chrome")
    token = make_device_token()
    records = [
        # A test profile outside the audience (not DE): send-test ignores the audience.
        {"type": "profile", "user": "qa", "ts": "2026-12-01T08:00:00Z",
         "props": {"first_name": "Quinn", "country": "US", "test": True}},
        {"type": "subscribe", "user": "qa", "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
         "endpoint": chrome.endpoint, "keys": {"p256dh": chrome.p256dh, "auth": chrome.auth}},
        {"type": "subscribe", "user": "qa", "ts": "2026-12-01T08:00:00Z", "platform": "safari",
         "device_token": token},
        {"user": "qa", "ts": "2026-12-01T08:01:00Z", "name": "Signed Up", "props": {"method": "email"}},
        {"type": "profile", "user": "someone", "ts": "2026-12-01T08:00:00Z", "props": {"country": "DE"}},
    ]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert main(["send-test", "welcome.push", "--campaign", "welcome", "--events", "records.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "✓ qa chrome: delivered (HTTP 201, 1 attempt)" in out and "✓ qa safari: delivered (HTTP 200, 1 attempt)" in out
    assert "someone" not in out  # not a test profile
    (push,) = [json.loads(p or b"{}") for p in webpush.payloads(chrome.id)]
    assert (push["title"], push["body"]) == ("Welcome, Quinn", "Thanks for signing up via email")
    (request,) = apns.requests_for(token)
    assert request.payload == {"aps": {"alert": {"title": "Welcome, Quinn", "body": "Thanks for signing up via email",
                                                 "action": "View"}, "url-args": ["welcome?src=push"]}}
    assert request.topic == "web.com.example.shop"


def test_send_test_to_a_named_user_without_subscriptions_fails_clearly(
        peers: tuple[WebPushService, ApnsService], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "records.jsonl").write_text(
        '{"type":"profile","user":"u1","ts":"2026-12-01T08:00:00Z","props":{}}\n'
        '{"user":"u1","ts":"2026-12-01T08:01:00Z","name":"Signed Up","props":{"method":"email"}}\n'
        '{"type":"profile","user":"u2","ts":"2026-12-01T08:00:00Z","props":{}}\n'
        '{"type":"subscribe","user":"u2","ts":"2026-12-01T08:00:00Z","platform":"chrome",'
        '"endpoint":"https://push.example/u2","keys":{"p256dh":"k","auth":"a"}}\n', encoding="utf-8")
    assert main(["send-test", "welcome.push", "--campaign", "welcome", "--events", "records.jsonl",
                 "--to", "u1", "--to", "u2", "--to", "ghost"]) == 1
    out = capsys.readouterr().out
    assert "✗ u1: no active subscription" in out and "✗ ghost: unknown user" in out
    # reachable, but the message needs event.method and u2 never signed up: the pipeline's render step says so
    assert "✗ u2: a personalisation has no value and no `default` (missing_property)" in out
