"""Bad input records (SPEC §9.1): every bad line is rejected with its line number and a reason that
says what is wrong, and nothing valid is lost because of a bad neighbour."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from pushlang import plan
from pushlang.cli import main
from pushlang.compiler import compile_text
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import Reject, read_records
from pushlang.runtime.replay import Summary, replay
from pushlang.runtime.store import MemoryStore

CAMPAIGN = """
campaign cart_reminder "Cart reminder" {
  platforms chrome
  on "Added To Cart"
  when {
    timezone "Europe/Berlin"
    dnd 21:00 to 09:00 delay
  }
  message {
    title "Hi @{user.first_name | default: 'friend'}"
    body "Your @{event.product | default: 'item'} is waiting"
    url "https://shop.example.com/cart"
  }
}
"""

SUB = '"platform":"chrome","endpoint":"https://push.example/{u}","keys":{{"p256dh":"BPk","auth":"x1"}}'

# Each good line changes what the campaign decides: a profile, subscriptions, carts.
GOOD = {
    "profile": b'{"type":"profile","user":"u1","ts":"2026-12-01T08:00:00Z","props":{"first_name":"Asha"}}',
    "subscribe u1": ('{"type":"subscribe","user":"u1","ts":"2026-12-01T08:00:00Z",' + SUB.format(u="u1") + "}").encode(),
    "subscribe u2, CRLF": ('{"type":"subscribe","user":"u2","ts":"2026-12-01T08:01:00Z",' + SUB.format(u="u2")
                           + "}\r\n").encode(),
    "cart u1": b'{"user":"u1","ts":"2026-12-01T09:30:00Z","name":"Added To Cart","props":{"product":"Lamp"}}',
    "cart u2, CRLF": b'{"user":"u2","ts":"2026-12-01T10:00:00Z","name":"Added To Cart","props":{"product":"Desk"}}\r\n',
    # 1796126400 = 2026-12-01T12:00:00Z
    "cart u1, epoch seconds": b'{"user":"u1","ts":1796126400,"name":"Added To Cart","props":{"product":"Rug"}}',
    "cart u2, offset": b'{"type":"event","user":"u2","ts":"2026-12-01T23:30:00+01:00","name":"Added To Cart"}',
    "unsubscribe u1": b'{"type":"unsubscribe","user":"u1","ts":"2026-12-02T07:00:00Z","endpoint":"https://push.example/u1"}',
    "cart u1, unsubscribed": b'{"user":"u1","ts":"2026-12-02T08:00:00Z","name":"Added To Cart"}',
}

# name → (line, what the reason must say: fragments, case-insensitive)
BAD: dict[str, tuple[bytes, list[str]]] = {
    "malformed JSON": (b'{"user":"u1","ts":"2026-12-01T09:00:00Z","name":"Added To Cart"', ["not valid JSON"]),
    "a JSON array": (b'["u1","2026-12-01T09:00:00Z","Added To Cart"]', ["not a JSON object"]),
    "a JSON string": (b'"Added To Cart"', ["not a JSON object"]),
    "no user": (b'{"ts":"2026-12-01T09:00:00Z","name":"Added To Cart"}', ["`user`"]),
    "empty user": (b'{"user":"","ts":"2026-12-01T09:00:00Z","name":"Added To Cart"}', ["`user`"]),
    "no ts": (b'{"user":"u1","name":"Added To Cart"}', ["`ts`"]),
    "unparseable ts": (b'{"user":"u1","ts":"yesterday","name":"Added To Cart"}', ["`ts`", "yesterday", "ISO-8601"]),
    "ts without zone": (b'{"user":"u1","ts":"2026-12-01T09:00:00","name":"Added To Cart"}', ["`ts`", "zone"]),
    "ts a date only": (b'{"user":"u1","ts":"2026-12-01","name":"Added To Cart"}', ["`ts`", "2026-12-01"]),
    "ts a boolean": (b'{"user":"u1","ts":true,"name":"Added To Cart"}', ["`ts`", "bool"]),
    "unknown type": (b'{"type":"purchase","user":"u1","ts":"2026-12-01T09:00:00Z","name":"Charged"}',
                     ["unknown type", "purchase"]),
    "event without name": (b'{"user":"u1","ts":"2026-12-01T09:00:00Z","props":{"product":"Lamp"}}', ["`name`"]),
    "subscription without endpoint or keys": (b'{"type":"subscribe","user":"u3","ts":"2026-12-01T09:00:00Z",'
                                              b'"platform":"chrome"}', ["subscription", "endpoint", "keys"]),
    "subscription without keys": (b'{"type":"subscribe","user":"u3","ts":"2026-12-01T09:00:00Z","platform":"chrome",'
                                  b'"endpoint":"https://push.example/u3"}', ["subscription", "keys"]),
    "subscription without auth": (b'{"type":"subscribe","user":"u3","ts":"2026-12-01T09:00:00Z","platform":"chrome",'
                                  b'"endpoint":"https://push.example/u3","keys":{"p256dh":"BPk"}}', ["auth"]),
    "unknown platform": (b'{"type":"subscribe","user":"u3","ts":"2026-12-01T09:00:00Z","platform":"netscape",'
                         b'"endpoint":"https://push.example/u3","keys":{"p256dh":"BPk","auth":"x1"}}',
                         ["unknown platform", "netscape"]),
    "props not an object": (b'{"user":"u1","ts":"2026-12-01T09:00:00Z","name":"Added To Cart","props":[1]}',
                            ["`props`", "object"]),
    "Latin-1 byte in a string": (b'{"user":"u1","ts":"2026-12-01T09:00:00Z","name":"Added To Cart",'
                                 b'"props":{"product":"Caf\xe9"}}', ["UTF-8"]),
    "a UTF-16 byte order mark": (b'\xff\xfe{"user":"u1"}', ["not valid JSON"]),
}

BLANK = [b"", b"   ", b"\r", b"\t"]


def _file(order: list[tuple[str, bytes]]) -> bytes:
    return b"".join(line if line.endswith(b"\n") else line + b"\n" for _, line in order)


def mixed() -> tuple[bytes, dict[int, str]]:
    """GOOD lines with the BAD ones and blank lines between them; bad line numbers → case names."""
    good, bad, blank = list(GOOD.items()), list(BAD.items()), list(BLANK)
    order: list[tuple[str, bytes]] = []
    while good or bad:
        if bad:
            name, (line, _) = bad.pop(0)
            order.append((name, line))
        if good:
            order.append(good.pop(0))
        if blank and len(order) % 3 == 0:
            order.append(("blank", blank.pop(0)))
    order.append(("blank", b"\r"))  # a CRLF blank line at the very end
    bad_lines = {n: name for n, (name, _) in enumerate(order, 1) if name in BAD}
    return _file(order), bad_lines


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> plan.Plan:
    result = compile_text(str(tmp_path_factory.mktemp("records") / "cart.push"), CAMPAIGN)
    assert result.plan is not None, result.diagnostics
    return result.plan


def run(compiled: plan.Plan, data: bytes) -> tuple[list[Output], Summary]:
    out: list[Output] = []
    summary = replay(compiled, data.splitlines(keepends=True), MemoryStore(), out.append)
    return out, summary


def _says(reject: Reject, fragments: list[str]) -> bool:
    return all(f.lower() in reject.reason.lower() for f in fragments)


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_line_is_rejected_with_its_number_and_reason(compiled: plan.Plan, case: str) -> None:
    line, fragments = BAD[case]
    data = _file([("", GOOD["subscribe u1"]), ("", line), ("", GOOD["cart u1"])])
    rejects: list[Reject] = []
    records = list(read_records(data.splitlines(keepends=True), rejects))
    assert len(records) == 2
    assert [r.line for r in rejects] == [2]
    assert _says(rejects[0], fragments), f"{rejects[0].reason!r} should mention {fragments}"
    assert rejects[0].text == line.decode("utf-8", "replace")


def test_blank_lines_are_skipped_not_rejected_and_the_last_line_needs_no_newline() -> None:
    data = b"\n   \n\r\n\t\n" + GOOD["cart u1"] + b"\n\n" + GOOD["cart u1, unsubscribed"]
    rejects: list[Reject] = []
    assert len(list(read_records(data.splitlines(keepends=True), rejects))) == 2
    assert rejects == []


def test_crlf_and_epoch_seconds_lines_are_good() -> None:
    rejects: list[Reject] = []
    crlf, epoch, offset = GOOD["cart u2, CRLF"], GOOD["cart u1, epoch seconds"], GOOD["cart u2, offset"]
    records = list(read_records([crlf, epoch, offset], rejects))
    assert rejects == []
    assert [r.ts for r in records] == [1796119200_000000, 1796126400_000000, 1796164200_000000]


def test_every_bad_line_is_reported_and_every_good_line_processed(compiled: plan.Plan) -> None:
    data, bad_lines = mixed()
    outputs, summary = run(compiled, data)
    assert {r.line: r.reason for r in summary.rejects}.keys() == bad_lines.keys()
    for reject in summary.rejects:
        case = bad_lines[reject.line]
        assert _says(reject, BAD[case][1]), f"line {reject.line} ({case}): {reject.reason!r}"
    assert summary.records == len(GOOD)

    good_only, _ = run(compiled, _file(list(GOOD.items())))
    assert outputs == good_only
    # The good lines matter: the CRLF subscription and the epoch-seconds cart made decisions.
    decided = [(o.at, o.user, o.outcome, o.body) for o in outputs]
    assert decided == [
        ("2026-12-01T09:30:00Z", "u1", "send", "Your Lamp is waiting"),
        ("2026-12-01T10:00:00Z", "u2", "send", "Your Desk is waiting"),
        ("2026-12-01T12:00:00Z", "u1", "send", "Your Rug is waiting"),
        ("2026-12-01T22:30:00Z", "u2", "delay", None),  # 23:30 in Berlin
        ("2026-12-02T08:00:00Z", "u1", "suppress", None),  # unsubscribed
        ("2026-12-02T08:00:00Z", "u2", "send", "Your item is waiting"),  # 09:00 in Berlin
    ]


def test_replay_command_writes_rejects_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], compiled: plan.Plan) -> None:
    monkeypatch.chdir(tmp_path)  # no pushlang.toml around
    campaign, events = tmp_path / "cart.push", tmp_path / "events.jsonl"
    rejects, out = tmp_path / "rejects.jsonl", tmp_path / "decisions.jsonl"
    campaign.write_text(CAMPAIGN, encoding="utf-8")
    data, bad_lines = mixed()
    events.write_bytes(data)

    code = main(["replay", str(campaign), "--events", str(events), "--rejects", str(rejects), "--out", str(out)])

    # everything good went through; the exit code says whether most of the input was rejected
    assert code == (1 if len(bad_lines) > len(GOOD) else 0)
    written = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [set(r) for r in written] == [{"line", "reason", "text"}] * len(bad_lines)
    assert [r["line"] for r in written] == sorted(bad_lines)
    lines = data.split(b"\n")
    for r in written:
        case = bad_lines[r["line"]]
        assert all(f.lower() in r["reason"].lower() for f in BAD[case][1]), (case, r)
        assert r["text"] == lines[r["line"] - 1].decode("utf-8", "replace")
    expected, _ = run(compiled, data)
    assert out.read_bytes() == b"".join(msgspec.json.encode(o) + b"\n" for o in expected)
    err = capsys.readouterr().err
    assert f"{len(GOOD)} records, {len(bad_lines)} rejected" in err
    assert f"line {min(bad_lines)}: " in err


def test_an_epoch_ts_in_milliseconds_is_rejected() -> None:
    """An epoch `ts` past year 9999 (typically milliseconds) would push the clock millennia ahead."""
    rejects: list[Reject] = []
    lines = [b'{"user":"u1","ts":1796126400000,"name":"Added To Cart"}', b'{"user":"u1","ts":-5,"name":"A"}']
    assert list(read_records(lines, rejects)) == []
    assert [r.line for r in rejects] == [1, 2]
    assert "milliseconds?" in rejects[0].reason and "`ts`" in rejects[1].reason
