"""User tokens, the rate limit and the client address of the open browser endpoint (pushlang.service.identity)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import pytest

from pushlang.service.identity import RateLimiter, UserTokens, client_address, parse_networks, rate_key, sign

SECRET = "current-secret-0123456789abcdefghijkl"
OLD = "previous-secret-0123456789abcdefghijkl"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_the_token_format_is_what_a_site_backend_computes() -> None:
    """The recipe docs/security.md gives sites, computed here without pushlang."""
    mac = hmac.new(SECRET.encode(), b"v1|1767229200|u-asha", hashlib.sha256).digest()
    expected = "v1.1767229200." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert sign(SECRET, "u-asha", 1_767_229_200) == expected
    assert UserTokens((SECRET,)).issue("u-asha", 3600, now=NOW) == (expected, 1_767_229_200)
    assert UserTokens((SECRET,)).problem(expected, "u-asha", now=NOW) is None


def test_the_signing_code_of_docs_security_md_makes_valid_tokens() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", docs, re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the page's own example, as a site would paste it
    token = namespace["pushlang_user_token"](SECRET, "u-asha")
    assert UserTokens((SECRET,)).problem(token, "u-asha") is None
    assert UserTokens((SECRET,)).problem(token, "u-bo") == "the user token is not valid for user `u-bo`"


def test_a_token_speaks_for_its_user_only_until_it_expires() -> None:
    tokens = UserTokens((SECRET,))
    token = sign(SECRET, "u-asha", int(NOW) + 60)
    assert tokens.problem(token, "u-asha", now=NOW) is None
    assert tokens.problem(token, "u-asha", now=NOW + 60) == "the user token expired at 2026-01-01T00:01:00Z"
    assert tokens.problem(token, "victim", now=NOW) == "the user token is not valid for user `victim`"
    assert tokens.problem(sign("another-secret-0123456789abcdefghijkl", "u-asha", int(NOW) + 60), "u-asha",
                          now=NOW) == "the user token is not valid for user `u-asha`"
    # a forged expiry breaks the signature: the expiry is signed too
    forged = token.replace(f"v1.{int(NOW) + 60}.", f"v1.{int(NOW) + 10**9}.")
    assert tokens.problem(forged, "u-asha", now=NOW + 120) == "the user token is not valid for user `u-asha`"
    # `|` in a user id cannot move the expiry: the expiry is digits and comes first
    assert tokens.problem(sign(SECRET, "a|b", int(NOW) + 60), "a|b", now=NOW) is None


@pytest.mark.parametrize("token", ["v1", "v2.1767229200.abc", "v1.soon." + "A" * 43, "v1.1767229200." + "A" * 42,
                                   "v1.1767229200." + "A" * 43 + ".x", "v1.１７６７." + "A" * 43,
                                   "v1.1767229200." + "é" * 43])
def test_a_malformed_token_is_named_so(token: str) -> None:
    assert UserTokens((SECRET,)).problem(token, "u", now=NOW) == \
        "the user token is malformed: expected v1.<expiry>.<signature>"


def test_no_token_and_no_secret_say_what_to_do() -> None:
    assert "X-Pushlang-User-Token" in str(UserTokens((SECRET,)).problem(None, "u", now=NOW))
    assert "user_token_secret" in str(UserTokens(()).problem(sign(SECRET, "u", int(NOW) + 60), "u", now=NOW))
    with pytest.raises(ValueError, match="user_token_secret"):
        UserTokens(()).issue("u", 60)


def test_during_a_rotation_both_secrets_sign_valid_tokens() -> None:
    old_token = sign(OLD, "u-asha", int(NOW) + 60)
    rotating = UserTokens.from_server({"user_token_secret": SECRET, "previous_user_token_secret": OLD})
    assert rotating.problem(old_token, "u-asha", now=NOW) is None
    assert rotating.problem(sign(SECRET, "u-asha", int(NOW) + 60), "u-asha", now=NOW) is None
    assert rotating.issue("u-asha", 60, now=NOW)[0] == sign(SECRET, "u-asha", int(NOW) + 60)  # new ones: current
    rotated = UserTokens.from_server({"user_token_secret": SECRET})
    assert rotated.problem(old_token, "u-asha", now=NOW) == "the user token is not valid for user `u-asha`"


@pytest.mark.parametrize(("server", "message"), [
    ({"user_token_secret": "short"}, "user_token_secret must be a string of 32 characters or more"),
    ({"user_token_secret": 12345}, "user_token_secret must be a string"),
    ({"user_token_secret": SECRET, "previous_user_token_secret": "x"}, "previous_user_token_secret must be"),
    ({"previous_user_token_secret": OLD}, "set without user_token_secret"),
])
def test_bad_secrets_are_refused_in_words(server: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UserTokens.from_server(server)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limit_is_a_token_bucket_per_client() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 3, clock=clock)  # one a second, three at once
    assert [limiter.wait("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.wait("a") == pytest.approx(1.0)
    assert limiter.wait("b") == 0  # another client has its own bucket
    clock.now += 0.5
    assert limiter.wait("a") == pytest.approx(0.5)  # a refused request costs nothing
    clock.now += 0.5
    assert limiter.wait("a") == 0
    assert limiter.wait("a") == pytest.approx(1.0)
    clock.now += 60
    assert [limiter.wait("a") for _ in range(4)][-2:] == [0, pytest.approx(1.0)]  # refilled up to the burst only
    assert RateLimiter(0, 1, clock=clock).wait("a") == 0  # browser_rate = 0: no limit


def test_the_limiter_forgets_full_buckets_and_keeps_at_most_max_clients() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 5, max_clients=100, clock=clock)
    for n in range(1000):
        limiter.wait(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100  # the least recently seen went first
    assert limiter.wait("10.0.3.231") == 0 and limiter.wait("10.0.3.231") == 0  # the last seen kept its bucket
    clock.now += 5  # a bucket is full again after burst / rate = 5 s: the same as a new one
    limiter.wait("10.9.9.9")
    assert len(limiter) == 1


TRUSTED = parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("198.51.100.7", ["203.0.113.5"], "198.51.100.7"),  # an untrusted peer's header is not believed
    ("127.0.0.1", [], "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.5"], "203.0.113.5"),
    ("127.0.0.1", ["1.2.3.4, 203.0.113.5"], "203.0.113.5"),  # the client wrote 1.2.3.4 itself
    ("127.0.0.1", ["1.2.3.4, 203.0.113.5, 10.1.2.3"], "203.0.113.5"),  # through two trusted proxies
    ("127.0.0.1", ["1.2.3.4", "203.0.113.5,10.1.2.3"], "203.0.113.5"),  # the header given twice
    ("127.0.0.1", ["10.1.2.3, 10.4.5.6"], "10.1.2.3"),  # only trusted hops: the farthest one
    ("127.0.0.1", ["203.0.113.5, not-an-address, 10.1.2.3"], "10.1.2.3"),  # stops at what no proxy wrote
    ("::1", ["2001:db8::1"], "2001:db8::1"),
    (None, ["203.0.113.5"], "unknown"),
])
def test_the_client_address_believes_x_forwarded_for_only_from_trusted_proxies(
        peer: str | None, forwarded: list[str], client: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client
    if peer is not None:
        assert client_address(peer, forwarded, ()) == peer  # no trusted proxies: always the peer


def test_ipv6_clients_share_a_bucket_per_64_and_bad_proxies_are_named() -> None:
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("::ffff:203.0.113.5") == "203.0.113.5" and rate_key("203.0.113.5") == "203.0.113.5"
    with pytest.raises(ValueError, match=r"'proxy\.internal' is not an IP address or network"):
        parse_networks(["127.0.0.1", "proxy.internal"])
    with pytest.raises(ValueError, match="must be a list"):
        parse_networks("127.0.0.1")
