"""`pushlang send-test`: the campaign's message, rendered for test users, on real push services."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from peers.apns_service import ApnsService, make_device_token, make_provider_key
from peers.webpush_service import WebPushService

from pushlang import plan
from pushlang.cli import main
from pushlang.commands import common
from pushlang.dispatch.keys import generate
from pushlang.dispatch.send_test import UnknownVariant, variants_to_send

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


# ---- variants (SPEC §12.3) ---------------------------------------------------------------------

PROMO = '''campaign promo {
  send once at 2026-12-20 10:00
  message {
    title "Hello @{user.first_name | default: 'friend'}"
    body "Our winter sale"
    url "https://shop.example.com/sale"
  }
}
'''

PROMO_VARIANTS = '''campaign promo {
  send once at 2026-12-20 10:00
  message a 50% {
    title "Hello @{user.first_name | default: 'friend'}"
    body "Our winter sale"
    url "https://shop.example.com/sale"
  }
  message b 50% {
    title "20% off, @{user.first_name | default: 'friend'}"
    body "Only this week"
    url "https://shop.example.com/sale?b"
  }
}
'''


def _promo_records(tmp_path: Path, webpush: WebPushService) -> Any:
    chrome = webpush.new_subscription("chrome")
    records = [
        {"type": "profile", "user": "qa", "ts": "2026-12-01T08:00:00Z", "props": {"first_name": "Quinn", "test": True}},
        {"type": "subscribe", "user": "qa", "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
         "endpoint": chrome.endpoint, "keys": {"p256dh": chrome.p256dh, "auth": chrome.auth}},
    ]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return chrome


def _with_variants(compiled: plan.Plan) -> plan.Plan:
    """promo with variants a and b, each with the tag "promo" (the plan the variant syntax compiles to)."""
    (promo,) = [c for c in compiled.campaigns if c.id == "promo"]
    a = msgspec.structs.replace(promo.message, tag="promo")
    b = msgspec.structs.replace(a, title=plan.Text((plan.Literal("20% off, "), *promo.message.title.parts[1:])),
                                body=plan.Text((plan.Literal("Only this week"),)), urgency="high")
    variants = (plan.Variant("a", 5000, a), plan.Variant("b", 5000, b))
    campaigns = tuple(msgspec.structs.replace(c, variants=variants, message=a) if c is promo else c
                      for c in compiled.campaigns)
    return msgspec.structs.replace(compiled, campaigns=campaigns)


def _send_test(compiled: plan.Plan, config: Any, variant: str | None) -> tuple[list[Any], list[str]]:
    """What `pushlang send-test` does, through the Python API: the records into a store, the test jobs,
    real delivery."""
    from pushlang import aio
    from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher
    from pushlang.dispatch.send_test import test_jobs
    from pushlang.runtime.engine import Engine
    from pushlang.runtime.instants import parse_instant
    from pushlang.runtime.records import read_records
    from pushlang.runtime.store import MemoryStore

    store = MemoryStore()
    engine = Engine(compiled, store, lambda out: None)
    for record in read_records(Path("records.jsonl").read_bytes().splitlines()):
        engine.feed(record)
    jobs, problems = test_jobs(compiled, store, "promo", None, {}, parse_instant("2026-12-02T00:00:00Z"), variant)

    async def deliver() -> list[Any]:
        async with Dispatcher(DeliverySettings.from_config(config), compiled.settings.default_ttl) as dispatcher:
            return list(await dispatcher.deliver(jobs))

    return aio.run(deliver()), problems


def test_send_test_sends_each_variant_labelled(peers: tuple[WebPushService, ApnsService], tmp_path: Path) -> None:
    webpush, _ = peers
    chrome = _promo_records(tmp_path, webpush)
    (tmp_path / "promo.push").write_text(PROMO, encoding="utf-8")
    compiled, config = common.compile_checked(["promo.push"])
    delivered, problems = _send_test(_with_variants(compiled), config, None)
    assert problems == [] and [(job.send.variant, result.delivered) for job, _, result in delivered] == [
        ("a", True), ("b", True)]
    pushes = [json.loads(p or b"{}") for p in webpush.payloads(chrome.id)]
    assert [(p["title"], p["body"], p["url"]) for p in pushes] == [
        ("[a] Hello Quinn", "Our winter sale", "https://shop.example.com/sale"),
        ("[b] 20% off, Quinn", "Only this week", "https://shop.example.com/sale")]
    # each its own notification: no tag, and distinct send_ids and Topics (neither replaces the other)
    assert all("tag" not in p for p in pushes)
    assert len({p["send_id"] for p in pushes}) == 2
    requests = webpush.requests_for(chrome.id)
    assert len({r.topic for r in requests}) == 2 and [r.urgency for r in requests] == [None, "high"]


def test_send_test_one_variant_as_its_users_get_it(peers: tuple[WebPushService, ApnsService],
                                                   tmp_path: Path) -> None:
    webpush, _ = peers
    chrome = _promo_records(tmp_path, webpush)
    (tmp_path / "promo.push").write_text(PROMO, encoding="utf-8")
    compiled, config = common.compile_checked(["promo.push"])
    with_variants = _with_variants(compiled)
    delivered, problems = _send_test(with_variants, config, "b")
    assert problems == [] and [(job.send.variant, result.delivered) for job, _, result in delivered] == [("b", True)]
    (push,) = [json.loads(p or b"{}") for p in webpush.payloads(chrome.id)]
    assert (push["title"], push["body"], push["tag"]) == ("20% off, Quinn", "Only this week", "promo")
    (request,) = webpush.requests_for(chrome.id)
    assert (request.topic, request.urgency) == ("promo", "high")  # the variant's own message

    campaign = with_variants.campaign("promo")
    assert campaign is not None
    with pytest.raises(UnknownVariant, match="campaign promo has no variant `c`; its variants are: a, b"):
        variants_to_send(campaign, "c")
    assert variants_to_send(campaign, None) == ("a", "b")


def test_send_test_variant_of_a_campaign_without_variants_is_a_usage_error(
        peers: tuple[WebPushService, ApnsService], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    webpush, _ = peers
    chrome = _promo_records(tmp_path, webpush)
    (tmp_path / "promo.push").write_text(PROMO, encoding="utf-8")
    assert main(["send-test", "promo.push", "--campaign", "promo", "--events", "records.jsonl",
                 "--variant", "a"]) == 2
    assert "campaign promo has no variant `a`; it has one message and no variants" in capsys.readouterr().err
    assert webpush.requests_for(chrome.id) == []
    assert main(["send-test", "promo.push", "--campaign", "promo", "--events", "records.jsonl"]) == 0
    assert '✓ qa chrome: delivered (HTTP 201, 1 attempt) — "Hello Quinn"' in capsys.readouterr().out


def test_send_test_variants_through_the_command(peers: tuple[WebPushService, ApnsService], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    webpush, _ = peers
    chrome = _promo_records(tmp_path, webpush)
    (tmp_path / "promo.push").write_text(PROMO_VARIANTS, encoding="utf-8")
    argv = ["send-test", "promo.push", "--campaign", "promo", "--events", "records.jsonl"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert '✓ qa chrome variant a: delivered (HTTP 201, 1 attempt) — "[a] Hello Quinn"' in out
    assert '✓ qa chrome variant b: delivered (HTTP 201, 1 attempt) — "[b] 20% off, Quinn"' in out
    assert main([*argv, "--variant", "b"]) == 0
    assert '✓ qa chrome variant b: delivered (HTTP 201, 1 attempt) — "20% off, Quinn"' in capsys.readouterr().out
    assert [json.loads(p or b"{}")["url"] for p in webpush.payloads(chrome.id)] == [
        "https://shop.example.com/sale", "https://shop.example.com/sale?b", "https://shop.example.com/sale?b"]
    assert main([*argv, "--variant", "c"]) == 2
    assert "campaign promo has no variant `c`; its variants are: a, b" in capsys.readouterr().err


# ---- languages (SPEC §12.5) --------------------------------------------------------------------

PROMO_LANGS = '''campaign promo {
  send once at 2026-12-20 10:00
  message {
    title "Hello @{user.first_name | default: 'friend'}"
    body "Our winter sale"
    url "https://shop.example.com/sale"
    lang "de" {
      title "Hallo @{user.first_name | default: 'Freund'}"
      url "https://shop.example.com/de/sale"
    }
  }
}
'''


def test_send_test_in_a_language_through_the_command(peers: tuple[WebPushService, ApnsService], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    webpush, _ = peers
    chrome = _promo_records(tmp_path, webpush)
    (tmp_path / "promo.push").write_text(PROMO_LANGS, encoding="utf-8")
    argv = ["send-test", "promo.push", "--campaign", "promo", "--events", "records.jsonl"]
    assert main(argv) == 0  # qa has no profile `language`: the message's own texts
    assert '✓ qa chrome: delivered (HTTP 201, 1 attempt) — "Hello Quinn"' in capsys.readouterr().out
    assert main([*argv, "--lang", "de_AT"]) == 0  # looked up as the user's language would be: de
    assert '✓ qa chrome lang de: delivered (HTTP 201, 1 attempt) — "Hallo Quinn"' in capsys.readouterr().out
    assert [json.loads(p or b"{}")["url"] for p in webpush.payloads(chrome.id)] == [
        "https://shop.example.com/sale", "https://shop.example.com/de/sale"]
    assert main([*argv, "--lang", "fr"]) == 2
    assert "campaign promo has no `lang` block for 'fr'; its languages are: de" in capsys.readouterr().err
